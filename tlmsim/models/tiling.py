"""How the controller cuts an op into tiles that fit the accelerator's buffers.

A linear layer W[n_out, k] streams its weights in tiles of whole rows (full k, so each
output finishes inside one tile) sized to one weight-buffer bank and rounded to the PE
array's columns. Tokens are processed in chunks whose input and output rows fit the
activation buffer; each chunk streams the weights again. Attention streams the KV
cache in tiles of whole heads. Tile bytes split the operand's exact packed bytes in
proportion, so the bytes moved equal the bytes stored.
"""

from __future__ import annotations

from dataclasses import dataclass

from tlmsim.engine.errors import ConfigError
from tlmsim.engine.units import ceil_div
from tlmsim.workloads.phases import Op


@dataclass(frozen=True)
class Tile:
    """One operand tile and the matmul work that uses it."""

    groups: int
    rows: int
    k: int
    n: int
    nbytes: int
    offset: int  # byte offset inside the operand tensor
    stored_weights: int  # stored operand elements in the tile (after N:M pruning)


def token_chunk(op: Op, activation_bytes: int, act_bits: int) -> int:
    """Largest number of rows whose inputs and outputs fit the activation buffer."""
    per_row = (op.k + op.n) * act_bits // 8
    chunk = activation_bytes // per_row
    if chunk < 1:
        raise ConfigError(f"accelerator.activation_buffer.capacity_kib is too small for one token of "
                          f"{op.name} (needs {per_row / 1024:.1f} KiB); increase it")
    return min(chunk, op.rows)


def linear_tiles(op: Op, bank_bytes: int, pe_cols: int, rows_per_chunk: int, min_k: int,
                 field: str = "accelerator.weight_buffer.bank_kib") -> list[Tile]:
    """Tiles of a linear layer: for each token chunk, the weights in bank-sized blocks."""
    blocks = weight_blocks(op, bank_bytes, pe_cols, min_k, field)
    tiles = []
    for chunk_start in range(0, op.rows, rows_per_chunk):
        chunk = min(rows_per_chunk, op.rows - chunk_start)
        done_units = 0
        for out_rows, k in blocks:
            begin = _share(op.operand_bytes, done_units, op.n * op.k)
            done_units += out_rows * k
            end = _share(op.operand_bytes, done_units, op.n * op.k)
            tiles.append(Tile(1, chunk, k, out_rows, end - begin, begin, op.weight_format.kept_weights(out_rows, k)))
    return tiles


def weight_blocks(op: Op, bank_bytes: int, pe_cols: int, min_k: int,
                  field: str = "accelerator.weight_buffer.bank_kib") -> list[tuple[int, int]]:
    """(output rows, inputs) of each weight tile, in streaming order.

    Tiles hold whole rows when at least ``pe_cols`` rows fit a bank (no column of the
    array idles); otherwise ``pe_cols`` rows are split along k and the PEs keep their
    partial sums between the k-slices (output-stationary). Row blocks are balanced so
    the last tile is not a tiny one whose compute would be exposed at the end. A
    k-slice shorter than ``min_k`` (one PE beat of inputs) is not a useful tile.
    """
    bytes_per_row = op.operand_bytes / op.n
    fit = int(bank_bytes // bytes_per_row)
    if fit >= min(pe_cols, op.n):
        rows = _balanced(op.n, fit - fit % pe_cols if fit >= pe_cols else fit, pe_cols)
        return [(min(rows, op.n - first), op.k) for first in range(0, op.n, rows)]
    step = op.weight_format.m or 1
    per_slice = int(bank_bytes // (bytes_per_row * min(pe_cols, op.n) / op.k)) // step * step
    if per_slice < min(min_k, op.k):
        need = bytes_per_row * min(pe_cols, op.n) * min(min_k, op.k) / op.k / 1024
        raise ConfigError(f"{field} is too small for one tile of {op.name} "
                          f"({min(pe_cols, op.n)} rows x {min(min_k, op.k)} inputs need {need:.1f} KiB); increase it")
    k_slice = _balanced(op.k, per_slice, step)
    return [(min(pe_cols, op.n - first), min(k_slice, op.k - k0))
            for first in range(0, op.n, pe_cols) for k0 in range(0, op.k, k_slice)]


def _balanced(total: int, most: int, unit: int) -> int:
    """Equal block size <= ``most`` (a multiple of ``unit`` when possible) covering ``total``."""
    blocks = ceil_div(total, most)
    size = ceil_div(total, blocks)
    rounded = ceil_div(size, unit) * unit
    return rounded if rounded <= most else size


def attention_tiles(op: Op, bank_bytes: int) -> list[Tile]:
    """Tiles of an attention matmul: whole heads of KV per tile (split KV if one head is too big)."""
    per_group = op.operand_bytes / op.groups
    groups_per_tile = int(bank_bytes // per_group) if per_group else op.groups
    if groups_per_tile >= 1:
        return [_attention_tile(op, g, min(groups_per_tile, op.groups - g), op.k, op.n)
                for g in range(0, op.groups, groups_per_tile)]
    parts = ceil_div(int(per_group), bank_bytes)  # a long context: split each head's KV
    split_k = op.k >= op.n
    tiles = []
    for g in range(op.groups):
        for p in range(parts):
            k = _share(op.k, p + 1, parts) - _share(op.k, p, parts) if split_k else op.k
            n = op.n if split_k else _share(op.n, p + 1, parts) - _share(op.n, p, parts)
            tiles.append(_attention_tile(op, g, 1, k, n, fraction=(p, parts)))
    return tiles


def _attention_tile(op: Op, first: int, groups: int, k: int, n: int, fraction=(0, 1)) -> Tile:
    begin = _share(op.operand_bytes, first * fraction[1] + fraction[0], op.groups * fraction[1])
    end = _share(op.operand_bytes, first * fraction[1] + fraction[0] + groups, op.groups * fraction[1])
    return Tile(groups, op.rows, k, n, end - begin, begin, groups * k * n)


def _share(total: int, part: int, parts: int) -> int:
    """Integer boundary ``total * part / parts`` so shares add up exactly to ``total``."""
    return total * part // parts
