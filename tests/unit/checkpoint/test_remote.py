"""Remote scans: a checkpoint served from 127.0.0.1 (plain HTTP with Range, the Hub's resolve
endpoint, an fsspec memory filesystem) gives the same findings as the local scan, for the bytes of
headers and scales plus a small overhead per request; broken servers end in clear errors."""

from __future__ import annotations

import json
import os

import pytest

from fp8doctor import CheckpointError, scan
from fp8doctor.checkpoint import remote
from fp8doctor.checkpoint.loader import INDEX_NAME, open_checkpoint
from fp8doctor.checkpoint.remote import (
    HEAD_PROBE,
    RangeNotSupported,
    RemoteError,
    RemoteOptions,
    RemoteStore,
    is_remote,
    open_remote_checkpoint,
    parse_url,
)
from fp8doctor.repair.fix import fix_refusal
from fp8doctor.scanner import COALESCE_GAP
from fp8doctor.testing import synth
from tests.conftest import poke, run_cli
from tests.helpers.fakehub import COMMIT, FakeServer
from tests.helpers.repo import ROOT

FAST = RemoteOptions(retries=2, backoff=0.01, backoff_max=0.02, timeout=5.0)
FAST_ENV = {"FP8DOCTOR_HTTP_RETRIES": "2", "FP8DOCTOR_HTTP_BACKOFF": "0.01", "FP8DOCTOR_HTTP_TIMEOUT": "5"}
PADDING = "layers.0.attn.wq_b.scale"


@pytest.fixture
def site(tmp_path):
    """A V4 checkpoint with MB-sized weights and one padding fault, under tmp/site/v4."""
    root = tmp_path / "site"
    ckpt = str(root / "v4")
    synth.deepseek_v4(ckpt, hidden=2048)
    poke(ckpt, PADDING, 2 * 4 + 1, b"\xff")  # row 2 of a [4, 4] scale whose logical box is [2, 2]
    return str(root)


@pytest.fixture
def serve():
    servers: list[FakeServer] = []

    def start(**kw) -> FakeServer:
        servers.append(FakeServer(**kw))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


@pytest.fixture
def hub_env(monkeypatch):
    """Point huggingface_hub at a local endpoint, with a token; nothing else is reachable."""
    def point(server: FakeServer, token: str = "hf_test") -> None:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_TOKEN", token)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return point


def _dicts(report):
    return [f.to_dict() for f in report.findings]


def _assert_cost(report, local):
    """Fetched no more than headers + scale bytes + a small overhead per request."""
    s = report.stats
    assert s.requests and s.bytes_fetched
    # what the local scan read (headers, coalesced scale ranges) plus the header probe's overshoot
    assert s.bytes_fetched <= local.stats.bytes_read + s.files * HEAD_PROBE
    assert s.bytes_fetched <= s.header_bytes_read + s.scale_bytes_read + s.requests * COALESCE_GAP + \
        s.files * HEAD_PROBE
    assert s.bytes_fetched < s.checkpoint_bytes / 10


def test_http_scan_matches_local(site, serve):
    local = scan(os.path.join(site, "v4"))
    assert [f.rule for f in local.findings] == ["scale-padding-nonzero"]
    srv = serve(root=site)
    report = scan(f"{srv.url}/v4/")
    assert _dicts(report) == _dicts(local)
    assert report.stats.scale_tensors_checked == local.stats.scale_tensors_checked > 0
    assert report.stats.bytes_fetched == srv.body_bytes()
    assert report.stats.requests == len(srv.hits)
    assert all(h.range is not None for h in srv.hits)
    _assert_cost(report, local)
    summary = report.summary()
    assert summary["bytes_fetched"] == report.stats.bytes_fetched and summary["requests"] == len(srv.hits)
    assert "bytes_fetched" not in local.summary()


def test_index_url_and_single_file_url(site, serve, tmp_path):
    srv = serve(root=site)
    local = scan(os.path.join(site, "v4"))
    assert _dicts(scan(f"{srv.url}/v4/{INDEX_NAME}")) == _dicts(local)
    oss = os.path.join(site, "oss")
    synth.gpt_oss(oss)
    poke(oss, "model.layers.0.mlp.experts.down_proj_scales", 0, b"\xff")
    assert _dicts(scan(f"{srv.url}/oss/model.safetensors")) == _dicts(scan(os.path.join(oss, "model.safetensors")))
    # a base URL without an index falls back to model.safetensors
    assert _dicts(scan(f"{srv.url}/oss")) == _dicts(scan(oss))


def test_header_larger_than_the_probe_is_fetched_exactly(site, serve):
    srv = serve(root=site)
    opts = RemoteOptions(head_probe=64)
    with open_remote_checkpoint(f"{srv.url}/v4", opts) as ck:
        shard = ck.shards["model-00001-of-00002.safetensors"]
        n = shard.header_len
    heads = [h.range for h in srv.hits if h.path.endswith("model-00001-of-00002.safetensors")]
    assert heads == ["bytes=0-63", f"bytes=64-{8 + n - 1}"]


def test_hub_scan_matches_local(site, serve, hub_env):
    local = scan(os.path.join(site, "v4"))
    srv = serve(repos={"org/model": os.path.join(site, "v4")}, token="hf_secret")
    hub_env(srv, "hf_secret")
    report = scan("hf://org/model@main")
    assert _dicts(report) == _dicts(local)
    _assert_cost(report, local)
    resolves = [h for h in srv.hits if "/resolve/" in h.path]
    assert all(h.path.startswith("/org/model/resolve/") for h in resolves)
    assert all(h.auth == "Bearer hf_secret" for h in resolves)
    # the first answer's X-Repo-Commit pins every later file to that commit
    assert f"/resolve/{COMMIT}/" in resolves[-1].path and "/resolve/main/" in resolves[0].path
    assert all(h.path.startswith(("/org/model/resolve/", "/cdn/org/model/")) for h in srv.hits)
    assert report.stats.requests == len(srv.hits) and report.stats.bytes_fetched == srv.body_bytes()


def test_hub_subfolder_and_commit(site, serve, hub_env):
    srv = serve(repos={"org/bundle": site})
    hub_env(srv)
    local = scan(os.path.join(site, "v4"))
    assert _dicts(scan(f"hf://org/bundle@{COMMIT}/v4")) == _dicts(local)
    assert all(f"/resolve/{COMMIT}/v4/" in h.path for h in srv.hits if "/resolve/" in h.path)


def test_hub_errors_are_one_line(site, serve, hub_env):
    srv = serve(repos={"org/model": os.path.join(site, "v4")}, token="hf_secret")
    hub_env(srv, "hf_wrong")
    with pytest.raises(RemoteError, match=r"HTTP 401.*HF_TOKEN"):
        open_remote_checkpoint("hf://org/model", FAST)
    hub_env(srv, "hf_secret")
    with pytest.raises(RemoteError, match="RevisionNotFound"):
        open_remote_checkpoint("hf://org/model@nope", FAST)
    with pytest.raises(CheckpointError, match="neither"):
        open_remote_checkpoint("hf://org/model@main/sub", FAST)


def test_missing_shard_is_a_finding_like_local(site, serve):
    os.remove(os.path.join(site, "v4", "model-00002-of-00002.safetensors"))
    local = scan(os.path.join(site, "v4"))
    srv = serve(root=site)
    report = scan(f"{srv.url}/v4")
    assert "index-shard-missing" in {f.rule for f in report.findings}
    assert _dicts(report) == _dicts(local)


def test_shard_names_escaping_the_base_are_not_fetched(site, serve):
    idx = os.path.join(site, "v4", INDEX_NAME)
    with open(idx) as f:
        data = json.load(f)
    first = next(iter(data["weight_map"]))
    data["weight_map"][first] = "../secret.safetensors"
    second = list(data["weight_map"])[1]
    data["weight_map"][second] = "http://elsewhere.invalid/x.safetensors"
    with open(idx, "w") as f:
        json.dump(data, f)
    srv = serve(root=site)
    report = scan(f"{srv.url}/v4")
    unsafe = [f for f in report.findings if f.rule == "path-unsafe"]
    assert len(unsafe) == 2
    assert not any("secret" in h.path or "elsewhere" in h.path for h in srv.hits)


def test_server_ignoring_range_is_refused_without_downloading(site, serve):
    srv = serve(root=site, ranges=False)
    size = os.path.getsize(os.path.join(site, "v4", "model-00001-of-00002.safetensors"))
    with pytest.raises(RangeNotSupported, match="ignores HTTP Range") as e:
        open_remote_checkpoint(f"{srv.url}/v4", FAST)
    # index and config are small: a 200 with no more than was asked for is fine; the shards are not
    assert "v4/model-0000" in str(e.value) and "safetensors bytes 0-99999" in str(e.value)
    assert [h.status for h in srv.hits] == [200, 200, 200, 200]  # index, config, two shard probes; no retries
    store = RemoteStore(parse_url(f"{srv.url}/v4"), FAST)
    with pytest.raises(RangeNotSupported, match=f"whole file \\({size:,} bytes\\)"):
        store.open("model-00001-of-00002.safetensors").size()
    store.close()
    assert store.transfer.bytes_fetched == 0 and store.transfer.requests == 1  # no body was read
    # and through the CLI: exit 2, one line, no traceback
    r = run_cli("scan", f"{srv.url}/v4/model-00001-of-00002.safetensors", env=FAST_ENV)
    assert r.returncode == 2 and "ignores HTTP Range" in r.stderr and "Traceback" not in r.stderr
    assert size > 1_000_000


def test_retries_with_backoff_then_succeeds(site, serve):
    local = scan(os.path.join(site, "v4"))
    srv = serve(root=site, fail_first=2)
    with open_remote_checkpoint(f"{srv.url}/v4", FAST) as ck:
        assert len(ck.shards) == 2
    assert [h.status for h in srv.hits[:2]] == [503, 503]
    srv2 = serve(root=site, fail_first=2)
    report = scan(f"{srv2.url}/v4")  # default retries
    assert _dicts(report) == _dicts(local)
    assert report.stats.requests == len(srv2.hits)


def test_persistent_failure_names_file_and_range(site, serve):
    srv = serve(root=site, always_fail=True)
    with pytest.raises(RemoteError) as e:
        open_remote_checkpoint(f"{srv.url}/v4/model-00001-of-00002.safetensors", FAST)
    msg = str(e.value)
    assert "v4/model-00001-of-00002.safetensors bytes 0-99999" in msg
    assert "HTTP 503" in msg and "gave up after 3 attempts" in msg
    assert len(srv.hits) == 3
    r = run_cli("scan", f"{srv.url}/v4", "--format", "json", env=FAST_ENV)
    assert r.returncode == 2 and r.stdout == "" and "gave up after 3 attempts" in r.stderr


def test_unreachable_server_is_a_clear_error(serve):
    srv = serve(root="/nonexistent")
    url = srv.url
    srv.close()
    with pytest.raises(RemoteError, match="gave up after 3 attempts"):
        open_remote_checkpoint(f"{url}/x", FAST)


def test_prefetched_ranges_are_fetched_concurrently(site, serve):
    srv = serve(root=site, delay=0.03)
    name = "model-00001-of-00002.safetensors"
    local = open_checkpoint(os.path.join(site, "v4"))
    with open_remote_checkpoint(f"{srv.url}/v4", FAST) as ck:
        src = ck.source(name)
        size = src.size()
        ranges = [(o, o + 5000) for o in range(200_000, min(size, 1_800_000), 100_000)]
        assert len(ranges) >= 12
        before = len(srv.hits)
        src.prefetch(ranges)
        for a, b in ranges:
            assert src.pread(a, b - a) == local.source(name).pread(a, b - a)
        assert len(srv.hits) - before == len(ranges)  # each range fetched once
    local.close()
    assert srv.max_in_flight >= 4


def test_shard_headers_are_probed_concurrently(site, serve):
    srv = serve(root=site, delay=0.05)
    scan(f"{srv.url}/v4")
    assert srv.max_in_flight == 2  # both shards' header probes at once


def test_fsspec_memory_filesystem(site):
    import fsspec

    fs = fsspec.filesystem("memory")
    for name in os.listdir(os.path.join(site, "v4")):
        with open(os.path.join(site, "v4", name), "rb") as f:
            fs.pipe_file(f"/fp8doctor-test/v4/{name}", f.read())
    try:
        local = scan(os.path.join(site, "v4"))
        report = scan("memory://fp8doctor-test/v4")
        assert _dicts(report) == _dicts(local)
        assert report.stats.bytes_fetched < report.stats.checkpoint_bytes / 10
        # fsspec can list: without the index, the shards are found by listing
        fs.rm("/fp8doctor-test/v4/" + INDEX_NAME)
        assert {f.rule for f in scan("memory://fp8doctor-test/v4").findings} == {"scale-padding-nonzero"}
    finally:
        fs.rm("/fp8doctor-test", recursive=True)


def test_cli_reports_the_network_cost(site, serve):
    srv = serve(root=site)
    r = run_cli("scan", f"{srv.url}/v4", "--format", "json")
    assert r.returncode == 1, r.stderr
    summary = json.loads(r.stdout)["summary"]
    assert summary["requests"] == len(srv.hits) and summary["bytes_fetched"] == srv.body_bytes()
    assert summary["checkpoint_bytes"] > 10 * summary["bytes_fetched"]
    r = run_cli("scan", f"{srv.url}/v4")
    assert r.returncode == 1 and "fetched " in r.stdout and " requests (" in r.stdout
    assert "download it, then run `fp8doctor fix DIR`" in r.stdout
    r = run_cli("scan", "hf://org/mo del")  # a message with [brackets] is printed as text, not markup
    assert r.returncode == 2 and "[@REVISION][/SUBFOLDER]" in r.stderr and "internal error" not in r.stderr
    local = run_cli("scan", os.path.join(site, "v4"))
    assert "fetched " not in local.stdout


def test_dump_style_reads_go_through_the_same_source(site, serve):
    """open_checkpoint on a URL gives a Checkpoint whose reads match the local file's bytes."""
    srv = serve(root=site)
    with open_checkpoint(f"{srv.url}/v4") as ck, open_checkpoint(os.path.join(site, "v4")) as lk:
        assert ck.remote and not lk.remote
        t = ck.tensors[PADDING]
        assert ck.read(t) == lk.read(lk.tensors[PADDING])
        w = ck.tensors["layers.1.attn.wo_b.weight"]
        assert ck.read(w, 1000, 5000) == lk.read(lk.tensors["layers.1.attn.wo_b.weight"], 1000, 5000)


@pytest.mark.parametrize("url,kind,repo,rev,base,target", [
    ("hf://org/model", "hf", "org/model", None, "", None),
    ("hf://org/model@main", "hf", "org/model", "main", "", None),
    ("hf://org/model@refs/pr/3/sub", "hf", "org/model", "refs/pr/3", "sub", None),
    ("hf://org/model@v1.0/a/b/model.safetensors.index.json", "hf", "org/model", "v1.0", "a/b", INDEX_NAME),
    ("hf://datasets/org/data@abc/x.safetensors", "hf", "org/data", "abc", "", "x.safetensors"),
    ("hf://gpt2@main", "hf", "gpt2", "main", "", None),
    ("https://example.test/ckpts/v4/", "http", "", None, "https://example.test/ckpts/v4", None),
    ("http://h:8080/m/model.safetensors", "http", "", None, "http://h:8080/m", "model.safetensors"),
    ("s3://bucket/ckpt", "fsspec", "", None, "s3://bucket/ckpt", None),
])
def test_parse_url(url, kind, repo, rev, base, target):
    loc = parse_url(url)
    assert (loc.kind, loc.repo_id, loc.revision, loc.base, loc.target) == (kind, repo, rev, base, target)


@pytest.mark.parametrize("url", ["hf://", "hf://org/mo del", "hf://org/model@", "https://h/x?sig=1", "http:///x"])
def test_bad_urls_are_checkpoint_errors(url):
    with pytest.raises(CheckpointError):
        parse_url(url)


def test_display_never_shows_credentials():
    loc = parse_url("https://user:pw@example.test/m")
    assert loc.display("a.safetensors") == "https://example.test/m/a.safetensors"


def test_is_remote_and_fix_refusal():
    assert is_remote("hf://org/model") and is_remote("https://x/y") and is_remote("s3://b/k")
    assert not is_remote("/tmp/ckpt") and not is_remote("relative/dir") and not is_remote("C:\\ckpt")
    msg = fix_refusal("hf://org/model@v2")
    assert "hf download org/model --revision v2 --local-dir DIR" in msg and "--output DIR" in msg
    assert "download it first" in fix_refusal("https://example.test/m")
    assert remote.is_remote is is_remote


def test_missing_extra_is_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(RemoteError, match=r"pip install 'fp8doctor\[remote\]'"):
        open_remote_checkpoint("hf://org/model", FAST)


def test_local_scans_never_import_the_remote_clients(v4):
    import subprocess
    import sys

    code = ("import sys, fp8doctor; fp8doctor.scan(sys.argv[1]); "
            "print(sorted(m for m in ('huggingface_hub', 'fsspec', 'httpx2', 'httpx', "
            "'fp8doctor.checkpoint.remote') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, v4], capture_output=True, text=True, timeout=60,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_download_copies_only_the_named_shards(site, serve, tmp_path):
    srv = serve(root=site)
    name = "model-00002-of-00002.safetensors"
    dest = tmp_path / "out"
    with open_remote_checkpoint(f"{srv.url}/v4", RemoteOptions(retries=1, backoff=0.01)) as ck:
        before = ck.transfer.bytes_fetched
        [path] = remote.download(ck, [name], str(dest))
        fetched = ck.transfer.bytes_fetched - before
        with pytest.raises(RemoteError):
            remote.download(ck, ["../escape.safetensors"], str(dest))
    with open(path, "rb") as a, open(os.path.join(site, "v4", name), "rb") as b:
        data = b.read()
        assert a.read() == data
    assert fetched == len(data) - HEAD_PROBE  # the header probe's bytes are reused, not fetched twice
    assert sorted(os.listdir(dest)) == [name]


def test_fix_refuses_remote_paths_without_output(site, serve):
    srv = serve(root=site)
    before = {n: os.path.getmtime(os.path.join(site, "v4", n)) for n in os.listdir(os.path.join(site, "v4"))}
    r = run_cli("fix", f"{srv.url}/v4")
    assert r.returncode == 2 and "is remote and fix only rewrites local files" in r.stderr
    assert "--output DIR" in r.stderr and "Traceback" not in r.stderr
    assert srv.hits == []  # refused before any request
    r = run_cli("fix", "hf://org/model@v2", "--undo")
    assert r.returncode == 2 and "hf download org/model --revision v2 --local-dir DIR" in r.stderr
    assert before == {n: os.path.getmtime(os.path.join(site, "v4", n)) for n in os.listdir(os.path.join(site, "v4"))}


def test_fix_output_on_a_url_fetches_only_the_shards_to_repair(site, serve, tmp_path):
    from fp8doctor.repair.fix import fix

    srv = serve(root=site)
    local_copy = tmp_path / "local-out"
    out = tmp_path / "out"
    expect = fix(os.path.join(site, "v4"), output=str(local_copy))
    result = fix(f"{srv.url}/v4", output=str(out))
    assert result.mode == "output" and result.bytes_changed == expect.bytes_changed == 1
    assert result.bytes_written == expect.bytes_written
    bad = "model-00001-of-00002.safetensors"  # holds the padding fault; shard 2 is clean
    assert sorted(os.listdir(out)) == sorted(["config.json", INDEX_NAME, bad])
    with open(out / bad, "rb") as a, open(local_copy / bad, "rb") as b:
        assert a.read() == b.read()
    assert scan(str(out / bad)).findings == ()
    whole = [h for h in srv.hits if h.path.endswith("00002-of-00002.safetensors")]
    assert sum(h.sent for h in whole) <= HEAD_PROBE  # the clean shard: its header probe only
    assert not any(n.startswith(".out.fp8doctor-fetch") for n in os.listdir(tmp_path))  # staging removed
    assert "fetched 1 of 2 shards" in result.notes[0]
    # the CLI way, and a dry run that writes nothing
    r = run_cli("fix", f"{srv.url}/v4", "--dry-run", "--output", str(tmp_path / "dry"))
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "dry").exists()


def test_sarif_of_a_remote_scan_points_at_the_urls(site, serve, tmp_path):
    from tests.unit.reporters.test_reporters_sarif import validate

    srv = serve(root=site)
    r = run_cli("scan", f"{srv.url}/v4/", "--format", "sarif", cwd=str(tmp_path))
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    validate(doc)
    [result] = doc["runs"][0]["results"]
    uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == f"{srv.url}/v4/model-00001-of-00002.safetensors"


def test_config_file_of_the_current_directory_applies_to_urls(site, serve, tmp_path):
    srv = serve(root=site)
    work = tmp_path / "work"
    work.mkdir()
    (work / "fp8doctor.toml").write_text('ignore = ["scale-padding-nonzero"]\n')
    r = run_cli("scan", f"{srv.url}/v4", "--format", "json", cwd=str(work))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["findings"] == []


def test_dump_of_a_url_matches_the_local_dump(site, serve):
    srv = serve(root=site)
    local = run_cli("dump", os.path.join(site, "v4"), "--findings", "--format", "json")
    remote_ = run_cli("dump", f"{srv.url}/v4", "--findings", "--format", "json")
    assert local.returncode == remote_.returncode == 0, remote_.stderr
    a, b = json.loads(local.stdout), json.loads(remote_.stdout)
    a.pop("target", None)
    b.pop("target", None)
    assert a == b and PADDING in local.stdout
    import subprocess
    import sys

    raw = subprocess.run([sys.executable, "-m", "fp8doctor", "dump", f"{srv.url}/v4", "--tensor", PADDING,
                          "--format", "raw"], capture_output=True, timeout=60)
    with open_checkpoint(os.path.join(site, "v4")) as ck:
        assert raw.returncode == 0 and raw.stdout == ck.read(ck.tensors[PADDING])


def test_scan_announces_its_reads_to_remote_sources(site, serve, monkeypatch):
    """The scanner hands every shard's coalesced reads to RemoteFile.prefetch before reading them,
    so they are fetched ahead, several at once; each announced range is then fetched exactly once."""
    from fp8doctor.checkpoint.remote import RemoteFile

    announced: list[tuple[int, int]] = []
    real = RemoteFile.prefetch

    def spy(self, ranges):
        announced.extend(ranges)
        return real(self, ranges)

    monkeypatch.setattr(RemoteFile, "prefetch", spy)
    srv = serve(root=site)
    report = scan(f"{srv.url}/v4")
    assert _dicts(report) == _dicts(scan(os.path.join(site, "v4")))
    assert announced, "scan did not prefetch"
    shard_gets = [h for h in srv.hits if h.path.endswith(".safetensors")]
    # two header probes (one per shard), at most one header remainder each, then each announced read once
    assert len(shard_gets) <= 2 + 2 + len(announced)


def test_credentials_in_a_url_never_reach_a_report(site, serve, tmp_path):
    """`https://user:secret@host/...` is scanned, but reports are uploaded as CI artifacts and to code
    scanning: the secret appears in no output format and no SARIF URI."""
    srv = serve(root=site)
    url = srv.url.replace("http://", "http://alice:s3cr3t@") + "/v4/"
    report = scan(url)
    assert report.stats.scale_tensors_checked > 0
    assert "s3cr3t" not in report.target
    for fmt in ("console", "json", "sarif", "junit", "markdown", "github"):
        res = run_cli("scan", url, "--format", fmt)
        assert res.returncode == 1, res.stderr
        assert "s3cr3t" not in res.stdout + res.stderr, fmt
