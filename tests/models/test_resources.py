"""PE-array resources from synthesis: Yosys counts, array totals, the table, the cache."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

import pytest

from tlmsim.engine.errors import ConfigError
from tlmsim.models.pe_array import PeArrayConfig
from tlmsim.models.synthesis import (
    PeDesign,
    PeResources,
    ResourceCount,
    array_of,
    pe_array_resources,
    pe_design_for,
    yosys,
)
from tlmsim.models.synthesis import cache as synth_cache
from tlmsim.models.synthesis.regenerate import TABLE_DESIGNS
from tlmsim.workloads import graph_cache

SMALL_INT4 = PeDesign(n=2, m=4, lanes=1)
SMALL_TERNARY = PeDesign(n=2, m=4, lanes=1, ternary=True)
FLAGSHIP_INT4 = PeDesign(n=2, m=4, lanes=16)


@pytest.fixture(scope="session")
def fresh_synthesis() -> dict[PeDesign, PeResources]:
    """Uncached Yosys runs of the two small PEs (about 10 s each, run side by side)."""
    designs = (SMALL_INT4, SMALL_TERNARY)
    with ThreadPoolExecutor(max_workers=2) as pool:  # each run is its own process
        return dict(zip(designs, pool.map(yosys.synthesize, designs)))


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """An empty TLMSIM_CACHE and no committed table, so every lookup hits the disk cache or Yosys."""
    monkeypatch.setenv("TLMSIM_CACHE", str(tmp_path))
    monkeypatch.setattr(synth_cache, "table_entry", lambda inputs: None)
    return tmp_path


def table_resources(design: PeDesign) -> PeResources:
    entry = synth_cache.table_entry(yosys.synthesis_inputs(design))
    assert entry is not None, f"{design.label()} is not in the committed table"
    return entry


# ---- Yosys and the array ------------------------------------------------------------------


def test_array_totals_equal_a_yosys_run_times_the_array_size(fresh_synthesis):
    cfg = PeArrayConfig(rows=2, cols=3, n=2, m=4, lanes=1)
    got = pe_array_resources(cfg, act_bits=8)
    one = fresh_synthesis[SMALL_INT4]
    assert got.pe_count == 6
    assert got.pes == ResourceCount(dsp=one.dsp * 6, lut=(one.lut + one.lutram) * 6, ff=one.ff * 6,
                                    bram36=one.bram36 * 6, uram=one.uram * 6)
    # per PE by hand: activations 1 lane x 4 x 8 bit; weights 2 x (4 code + 2 index) + 16 scale + 3 flags;
    # result drain 32 bits (one FF and one mux LUT each)
    assert got.interconnect == ResourceCount(lut=32 * 6, ff=(32 + 31 + 32) * 6)
    assert got.total == got.pes + got.interconnect


def test_a_fresh_synthesis_matches_the_committed_table(fresh_synthesis):
    for design, resources in fresh_synthesis.items():
        assert table_resources(design) == resources, design.label()


def test_int4_pe_uses_one_dsp_per_product_and_the_ternary_pe_none(fresh_synthesis):
    int4, ternary = fresh_synthesis[SMALL_INT4], fresh_synthesis[SMALL_TERNARY]
    assert int4.dsp_products == SMALL_INT4.n * SMALL_INT4.lanes
    assert ternary.dsp_products == 0
    assert ternary.dsp_scale == int4.dsp_scale >= 1  # the S3 group-scale multiply is the same in both
    assert not int4.other and not ternary.other  # every mapped cell type was classified


def test_flagship_ternary_pe_has_zero_product_dsps():
    ternary = table_resources(PeDesign(n=2, m=4, lanes=16, ternary=True))
    assert ternary.dsp_products == 0 and ternary.dsp_scale >= 1


def test_packing_puts_two_token_rows_on_the_same_product_dsps():
    single, packed = table_resources(FLAGSHIP_INT4), table_resources(PeDesign(n=2, m=4, lanes=16, pack=2))
    assert single.dsp_products == FLAGSHIP_INT4.n * FLAGSHIP_INT4.lanes
    assert packed.dsp_products == single.dsp_products  # same multipliers, twice the products
    assert packed.dsp_scale == 2 * single.dsp_scale  # each row scales its own partial sum


def test_packed_array_needs_half_the_pes_and_product_dsps():
    cfg = PeArrayConfig(rows=4, cols=128, n=2, m=4, lanes=16)
    single, packed = pe_array_resources(cfg, 8), pe_array_resources(cfg, 8, pack=2)
    assert (single.pe_count, packed.pe_count) == (512, 256)
    assert packed.dsp_products * 2 == single.dsp_products
    assert packed.interconnect.ff < single.interconnect.ff  # one weight register per packed pair


def test_committed_table_is_current_and_complete():
    table = json.loads(synth_cache.TABLE_PATH.read_text())
    current = yosys.synthesis_inputs(TABLE_DESIGNS[0])
    fix = "rerun: python -m tlmsim.models.synthesis.regenerate"
    for key in ("rtl_sha256", "yosys", "flow_sha256"):
        assert table[key] == current[key], f"pe_table.json is stale ({key}); {fix}"
    assert [e["design"] for e in table["entries"]] == [asdict(d) for d in TABLE_DESIGNS], fix


# ---- configs that have no RTL -------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "design_options", "message"), [
    ({"native_weight_bits": 8}, {}, "native_weight_bits=8 has no RTL"),
    ({"rows": 3}, {"pack": 2}, "rows=3 is not a multiple of pack=2"),
    ({}, {"pack": 2, "ternary_only": True}, "pack=2: use 1, or 2 with INT4"),
    ({}, {"family": "ice40"}, "family='ice40'"),
])
def test_a_pe_config_without_rtl_is_refused_naming_the_field(kwargs, design_options, message):
    cfg = PeArrayConfig(**{"rows": 4, "cols": 2, "n": 2, "m": 4, "lanes": 2, **kwargs})
    with pytest.raises(ConfigError, match=message):
        pe_design_for(cfg, 8, **design_options)


# ---- the cache ----------------------------------------------------------------------------


class CountingSynth:
    """Stands in for Yosys in cache tests: counts calls, returns a fixed result."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, design: PeDesign) -> PeResources:
        self.calls += 1
        return PeResources(dsp_products=design.lanes, dsp_scale=2, lut=100, ff=50, carry=3)


@pytest.fixture
def counting_synth(monkeypatch, private_cache):
    fake = CountingSynth()
    monkeypatch.setattr(synth_cache, "synthesize", fake)
    return fake


def test_second_lookup_comes_from_the_disk_cache(counting_synth, private_cache):
    design = PeDesign(n=1, m=4, lanes=3)
    first = synth_cache.pe_resources(design)
    assert synth_cache.pe_resources(design) == first
    assert counting_synth.calls == 1
    assert len(list((private_cache / "synth").glob("*.json"))) == 1


def test_a_changed_rtl_digest_re_synthesizes(counting_synth, monkeypatch):
    design = PeDesign(n=1, m=4, lanes=3)
    synth_cache.pe_resources(design)
    monkeypatch.setattr(yosys, "rtl_sha256", lambda: "0" * 64)
    synth_cache.pe_resources(design)
    synth_cache.pe_resources(design)
    assert counting_synth.calls == 2


def test_a_damaged_cache_file_warns_and_is_rebuilt(counting_synth, caplog):
    design = PeDesign(n=1, m=4, lanes=5)
    synth_cache.pe_resources(design)
    path = synth_cache.cache_path(yosys.synthesis_inputs(design))
    data = json.loads(path.read_text())
    data["result"]["lut"] += 1  # the payload no longer matches its digest
    path.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING, logger="tlmsim.cache"):
        again = synth_cache.pe_resources(design)
    assert counting_synth.calls == 2 and again.lut == 100
    assert "fails its checksum" in caplog.text


def test_a_cache_file_of_other_inputs_is_a_miss(counting_synth, caplog):
    a, b = PeDesign(n=1, m=4, lanes=6), PeDesign(n=1, m=4, lanes=7)
    synth_cache.pe_resources(a)
    path_a = synth_cache.cache_path(yosys.synthesis_inputs(a))
    path_a.replace(synth_cache.cache_path(yosys.synthesis_inputs(b)))  # a stale or copied file
    with caplog.at_level(logging.WARNING, logger="tlmsim.cache"):
        assert synth_cache.pe_resources(b).dsp_products == 7
    assert counting_synth.calls == 2 and "other inputs" in caplog.text


def test_a_stale_table_is_not_used(monkeypatch, caplog):
    monkeypatch.setattr(graph_cache, "_warned", set())  # the warning is once per process
    monkeypatch.setattr(yosys, "rtl_sha256", lambda: "f" * 64)
    with caplog.at_level(logging.WARNING, logger="tlmsim.cache"):
        assert synth_cache.table_entry(yosys.synthesis_inputs(SMALL_INT4)) is None
    assert "stale (rtl_sha256 changed)" in caplog.text


def test_real_results_round_trip_through_the_disk_cache(fresh_synthesis, private_cache, monkeypatch):
    monkeypatch.setattr(synth_cache, "synthesize", lambda d: fresh_synthesis[d])
    assert synth_cache.pe_resources(SMALL_TERNARY) == fresh_synthesis[SMALL_TERNARY]
    monkeypatch.setattr(synth_cache, "synthesize", lambda d: pytest.fail("should come from the cache"))
    assert synth_cache.pe_resources(SMALL_TERNARY) == fresh_synthesis[SMALL_TERNARY]
    assert array_of(SMALL_TERNARY, 1, 1).pe == fresh_synthesis[SMALL_TERNARY]
