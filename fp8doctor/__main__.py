from fp8doctor.cli.app import main

main()
