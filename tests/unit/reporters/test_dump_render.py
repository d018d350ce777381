"""Terminal rendering, screenshot-free: rich's recording console shows that padded entries and bytes
that break a rule carry their styles (checked in the exported HTML and ANSI), in every view."""

from __future__ import annotations

import re

import pytest
from rich.console import Console

from fp8doctor import DumpOptions, RowRange, dump
from fp8doctor.reporters import dump_grid, dump_heatmap, dump_histogram
from tests.conftest import poke

NAME = "layers.0.attn.wq_b.scale"  # stored [4, 4], logical [2, 2]


def recording(width: int = 120) -> Console:
    return Console(record=True, width=width, force_terminal=True, color_system="truecolor", highlight=False)


def spans(html: str) -> list[tuple[str, str]]:
    """(inline style, text) of every styled span of an export_html(inline_styles=True)."""
    return re.findall(r'<span style="([^"]*)">([^<]*)</span>', html)


@pytest.fixture
def broken(v4):
    poke(v4, NAME, 9, b"\xff\x90")  # padded entries [2, 1] and [2, 2]
    poke(v4, NAME, 1, b"\xff")  # a real entry: NaN
    return v4


def test_grid_styles_padding_dim_and_bad_bytes_red(broken):
    console = recording()
    dump_grid.render(dump(broken, DumpOptions(tensors=(NAME,))), console)
    ansi = console.export_text(styles=True, clear=False)
    html = console.export_html(inline_styles=True)
    # a run of padded cells is one span (the grid merges neighbours of one style): count its cells
    cells = [(style, cell) for style, text in spans(html) for cell in text.split(" ")
             if re.fullmatch(r"[.!?][0-9a-f]{2}", cell)]
    by_text: dict[str, list[str]] = {}
    for style, text in cells:
        by_text.setdefault(text, []).append(style)
    # the two bad padded bytes and the NaN: bold on a red background
    assert len(by_text["!ff"]) == 2 + 1 and len(by_text["!90"]) == 1  # two in the grid + one in the legend
    for style in by_text["!ff"] + by_text["!90"]:
        assert "background-color: #800000" in style and "font-weight: bold" in style
    # 12 padded entries, 2 of them bad: the other 10 (plus the legend's sample) are dim, no background
    pads = by_text[".00"]
    assert len(pads) == 10 + 1
    assert all("background-color" not in s and "color: #7f7f7f" in s for s in pads)
    # real entries: not styled as padding or bad
    assert not any(t.startswith((" 7", ".7", "!7")) for _, t in cells)
    # the same marks in ANSI: SGR 2 (dim) for padding, 1;37;41 (bold white on red) for bad
    assert "\x1b[2m.00" in ansi and "\x1b[1;37;41m!ff" in ansi and "\x1b[1;37;41m!90" in ansi


def test_grid_without_colour_keeps_marks(broken):
    console = Console(record=True, width=120, no_color=True, force_terminal=False)
    dump_grid.render(dump(broken, DumpOptions(tensors=(NAME,), region="padding")), console, decode=True)
    text = console.export_text()
    row2 = next(ln for ln in text.splitlines() if re.match(r"\s+2\s+0x", ln))
    assert row2.split()[2:] == [".00", "2^-127", "!ff", "NaN", "!90", "2^17", ".00", "2^-127"]
    row0 = next(ln for ln in text.splitlines() if re.match(r"\s+0\s+0x", ln))
    assert "74" not in row0 and row0.split()[2:] == [".00", "2^-127", ".00", "2^-127"]


def test_grid_wraps_wide_rows_with_offsets(v4):
    name = "layers.0.ffn.experts.0.w1.scale"  # rows of 10 entries
    console = Console(record=True, width=40, no_color=True)
    [d] = dump(v4, DumpOptions(tensors=(name,), rows=RowRange(0, 1)))
    dump_grid.render([d], console)
    lines = [ln.split() for ln in console.export_text().splitlines() if re.match(r"\s+(0|\+\d+)\s+0x", ln)]
    assert [ln[0] for ln in lines] == ["0", "+4", "+8"]
    assert [int(ln[1], 16) for ln in lines] == [d.byte_offset, d.byte_offset + 4, d.byte_offset + 8]
    assert bytes.fromhex("".join(c for ln in lines for c in ln[2:])) == d.data


def test_heatmap_colours_garbage(v4):
    name = "layers.0.ffn.experts.1.w1.scale"  # rows 80..95 are padding
    poke(v4, name, 850, b"\xff" + b"\xf0" * 9)
    console = recording()
    dump_heatmap.render(dump(v4, DumpOptions(tensors=(name,))), console)
    cells = spans(console.export_html(inline_styles=True))
    nan = [s for s, t in cells if t == "N"]
    assert nan and all("font-weight: bold" in s for s in nan)
    huge = [(s, t) for s, t in cells if set(t) == {"█"}]  # (rich merges neighbours of one style)
    assert sum(len(t) for _, t in huge) == 9 + 2 and all("#d73027" in s for s, _ in huge)  # + legend; reddest band
    assert any(set(t) == {"."} for _, t in cells)  # the zero padding


def test_histogram_colours_bins_with_bad_entries(broken):
    console = recording()
    dump_histogram.render(dump(broken, DumpOptions(tensors=(NAME,))), console)
    cells = spans(console.export_html(inline_styles=True))
    bad = {t.strip() for s, t in cells if "background-color: #800000" in s}
    assert {"NaN", "ff", "2^17", "90"} <= bad
    assert "2^-127 (zero)" not in bad  # 10 correct padded zeros: no rule broken


def test_heatmap_legend_without_colour_has_one_glyph_per_band(v4):
    name = "layers.0.ffn.experts.1.w1.scale"  # rows 80..95 are padding
    poke(v4, name, 850, b"\xff" + b"\xf0" * 9)
    console = Console(record=True, width=120, no_color=True, force_terminal=False)
    dump_heatmap.render(dump(v4, DumpOptions(tensors=(name,))), console)
    text = console.export_text()
    legend = next(ln for ln in text.splitlines() if "exponent vs the real entries' median" in ln)
    glyphs = re.findall(r"(\S)\1(?:<=|>)[+-]\d+", legend)
    assert len(glyphs) == len(dump_heatmap._BANDS) and len(set(glyphs)) == len(glyphs)
    picture = "".join(ln for ln in text.splitlines() if re.match(r"\s+\d+\s{2}\S", ln))
    assert "9" * 9 in picture  # the 0xf0 garbage is the farthest band above, told apart without colour


@pytest.mark.parametrize("region", ["all", "padding", "logical"])
@pytest.mark.parametrize("decode", [False, True])
def test_a_capped_grid_from_a_preview_is_the_whole_selections_grid(tmp_path, region, decode):
    """The console grid capped at N rows is drawn from `TensorStream.preview` (the rows shown plus the
    selection's summary, streamed in pieces): the same text as from the whole selection, for any
    piece size, region and cap, with --decode's column width taken over every piece."""
    import itertools

    import numpy as np

    from fp8doctor.dumper import dump_streams
    from fp8doctor.testing import synth
    from fp8doctor.testing.synth import Tensor, write_safetensors

    rng = np.random.default_rng(5)
    d = tmp_path / "ck"
    synth.deepseek_v4(str(d))  # padded expert scales (rows 80..95 of 96), garbage in their padding
    synth.garble_padding(str(d), prefix="")
    e8 = rng.integers(118, 136, (300, 40)).astype(np.uint8)
    e8[rng.random(e8.shape) < 0.01] = 0xFF
    e8[250:, :] = rng.integers(0, 256, (50, 40))  # garbage far down: the widest values sit there
    f32 = np.ldexp(np.ones((200, 12), np.float32), rng.integers(-8, 8, (200, 12))).astype(np.float32)
    f32[190:] = rng.standard_normal((10, 12)).astype(np.float32) * 1e-7
    extra = tmp_path / "extra"
    extra.mkdir()
    write_safetensors(str(extra / "model.safetensors"), {
        "m.e8.scale": Tensor("F8_E8M0", (300, 40), e8.reshape(-1)),
        "m.f32.scale": Tensor("F32", (200, 12), f32.reshape(-1).view(np.uint8))})
    texts = []
    for (path, names), max_rows in itertools.product(
            ((d, ("layers.0.ffn.experts.[01].w1.scale", "layers.0.attn.*.scale")), (extra, ("m.*",))),
            (1, 7, 64, 299, 1000)):
        with dump_streams(str(path), DumpOptions(tensors=names, region=region)) as streams:
            whole = [s.whole() for s in streams]
            for piece in (97, 4096, 1 << 20):
                width = dump_grid.value_width if decode else None
                preview = [s.preview(max_rows, width, piece_bytes=piece) for s in streams]
                a, b = recording(), recording()
                dump_grid.render(whole, a, decode, max_rows)
                dump_grid.render(preview, b, decode, max_rows)
                texts.append(a.export_text())
                assert b.export_text() == texts[-1], (max_rows, piece)
                assert all(len(p.data) <= len(w.data) for p, w in zip(preview, whole))
    assert any("more rows: --rows" in t for t in texts)  # the caps cut: the summary's rows were used


@pytest.mark.parametrize("region", ["all", "padding", "logical"])
def test_a_streamed_histogram_is_the_whole_selections_histogram(tmp_path, region):
    """`dump --histogram` counts its bins piece by piece (dump_histogram.stream_bins, the header from a
    preview): the same text as from the whole selection, for any piece size."""
    from fp8doctor.dumper import dump_streams
    from fp8doctor.reporters import RenderContext
    from fp8doctor.reporters.presenters import present
    from fp8doctor.testing import synth

    d = str(tmp_path / "v4")
    synth.deepseek_v4(d)
    synth.garble_padding(d, prefix="")
    poke(d, "layers.0.ffn.experts.0.w1.scale", 0, bytes([0xFF, 0x00, 0x99]))
    options = DumpOptions(tensors=("layers.0.ffn.experts.[01].w*.scale", "layers.0.attn.*.scale"), region=region)
    with dump_streams(d, options) as streams:
        whole = [s.whole() for s in streams]
        a = recording()
        dump_histogram.render(whole, a)
        want = a.export_text()
        for piece in (64, 999, 1 << 20):
            assert [dump_histogram.stream_bins(s.pieces(piece_bytes=piece)) for s in streams] == \
                [dump_histogram.bins(w) for w in whole]
        got = "".join(present("dump", "console", streams, RenderContext(views=("histogram",)), None))
    b = recording()
    dump_histogram.render_streamed([(s, dump_histogram.bins(s)) for s in whole], b)
    assert b.export_text() == want
    assert got.split() == want.split()  # the presenter's own console is plain text of another width
    assert "2^" in want
