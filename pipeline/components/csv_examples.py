"""TFX's CSV-to-tf.Example conversion for CsvExampleGen, vectorised with Arrow: the same Examples, byte for byte.

TFX's CSV executor parses every cell in Python twice: once to infer each column's type over the
whole split (a global combine that Beam's local runner answers only after holding every parsed line),
then to build one tf.Example per line. This module reads the split with Arrow's CSV reader instead,
infers the same types and encodes the same Examples in their deterministic serialisation, which is
also TFX's partition key, so the train/eval split is the same as well:

- a column is INT when every non-empty cell is a decimal integer within int64, FLOAT when every
  non-empty cell is a decimal number and one is not an integer, STRING when some cell is not a number
  (decided with TFX's own `_InferValueType` on the distinct such cells), UNKNOWN when every cell is
  empty: TFX's inference, taken over the whole split;
- an empty cell is a present feature with no values, and a cell of an UNKNOWN column a feature with no
  kind, as TFX writes them.

A split holding anything whose reading this module does not reproduce exactly (a quote character, a
carriage return that does not end a line, a cell Python reads as a number that is not a plain decimal
such as ' 12' or 'nan', an integer beyond int64, invalid UTF-8, a line with the wrong number of cells)
is `Unsupported`, and the caller converts it with TFX's own code: which path ran never shows in the
output.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from apache_beam.io.filesystems import FileSystems
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv as pa_csv
from tfx_bsl.coders import csv_decoder, example_coder

ColumnType = csv_decoder.ColumnType
Types = dict[str, ColumnType]

_INT = r"^[+-]?[0-9]+$"
_DECIMAL = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_BLOCK_BYTES = 8 << 20  # CSV bytes per Arrow batch: bounds the memory of a conversion


def _integers(cells: pa.Array) -> pa.Array:
    """Cells of decimal integers as int64 (Arrow does not take a leading '+'); ArrowInvalid past int64."""
    return pc.cast(pc.replace_substring_regex(cells, r"^\+", ""), pa.int64())


class Unsupported(ValueError):
    """The split holds something only TFX's own conversion reads exactly."""


def _check_raw(path: str) -> None:
    """Refuse quote characters and carriage returns that do not end a line (read in blocks)."""
    carry = b""
    with FileSystems.open(path) as f:  # as TFX reads it (.gz decompressed)
        while block := f.read(_BLOCK_BYTES):
            block = carry + block
            if b'"' in block:
                raise Unsupported(f"{path}: a quote character")
            carry = b"\r" if block.endswith(b"\r") else b""
            body = block[:-1] if carry else block
            if body.count(b"\r") != body.count(b"\r\n"):
                raise Unsupported(f"{path}: a carriage return inside a line")
    if carry:
        raise Unsupported(f"{path}: a carriage return inside a line")


def _batches(path: str, names: Sequence[str]) -> Iterator[pa.RecordBatch]:
    """The data lines of `path` as batches of string columns, empty cells null."""
    with FileSystems.open(path) as f:  # as TFX reads it (.gz decompressed)
        try:
            reader = pa_csv.open_csv(
                f,
                read_options=pa_csv.ReadOptions(column_names=list(names), skip_rows=1, block_size=_BLOCK_BYTES),
                parse_options=pa_csv.ParseOptions(quote_char=False),
                convert_options=pa_csv.ConvertOptions(
                    column_types={name: pa.string() for name in names}, null_values=[""], strings_can_be_null=True
                ),
            )
            yield from reader
        except pa.ArrowInvalid as error:  # ragged line, invalid UTF-8
            raise Unsupported(f"{path}: {error}") from error


def _batch_type(cells: pa.Array) -> tuple[ColumnType, bool]:
    """TFX's type of one batch of a column, and whether a cell is a number outside plain decimals."""
    present = cells.drop_null()
    if len(present) == 0:
        return ColumnType.UNKNOWN, False
    decimal = pc.match_substring_regex(present, _DECIMAL)
    if not pc.all(decimal).as_py():
        others = pc.unique(present.filter(pc.invert(decimal))).to_pylist()
        if any(csv_decoder._InferValueType(cell.encode()) == ColumnType.STRING for cell in others):  # pylint: disable=protected-access
            return ColumnType.STRING, False
        return ColumnType.FLOAT, True
    integer = pc.match_substring_regex(present, _INT)
    try:
        _integers(present.filter(integer))
    except pa.ArrowInvalid:  # beyond int64: TFX calls the cell STRING
        return ColumnType.INT, True
    return (ColumnType.INT if pc.all(integer).as_py() else ColumnType.FLOAT), False


def infer_types(paths: Sequence[str], names: Sequence[str]) -> Types:
    """TFX's column types over all of `paths` (a split); `Unsupported` when not reproducible."""
    types = {name: ColumnType.UNKNOWN for name in names}
    outside = set()
    for path in paths:
        _check_raw(path)
        for batch in _batches(path, names):
            for name in names:
                if types[name] == ColumnType.STRING:
                    continue
                kind, odd = _batch_type(batch.column(name))
                types[name] = max(types[name], kind)
                if odd:
                    outside.add(name)
    odd_numbers = sorted(name for name in outside if types[name] != ColumnType.STRING)
    if odd_numbers:
        raise Unsupported(f"numbers outside plain decimals in {', '.join(odd_numbers)}")
    return types


def _values(cells: pa.Array, kind: ColumnType) -> pa.Array:
    """One list per row: the cell's value, empty for an empty cell, null (no kind) for UNKNOWN."""
    if kind == ColumnType.UNKNOWN:
        return pa.nulls(len(cells), pa.list_(pa.int64()))
    if kind == ColumnType.INT:
        typed = _integers(cells)
    elif kind == ColumnType.FLOAT:
        typed = pc.cast(cells, pa.float64()).cast(pa.float32(), safe=False)
    else:
        typed = pc.cast(cells, pa.binary())
    counts = pc.cast(pc.is_valid(typed), pa.int32()).to_numpy(zero_copy_only=False)
    offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int32)])
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), typed.drop_null())


def _varint_lengths(values: np.ndarray) -> np.ndarray:
    """Bytes of each value as a protobuf varint."""
    lengths = np.ones(len(values), dtype=np.int64)
    for shift in (7, 14, 21, 28, 35, 42, 49, 56, 63):
        lengths += values >= (1 << shift)
    return lengths


def _binary_parts(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (from 0) and data bytes of a binary or large_binary array without nulls."""
    offset_type = np.int64 if pa.types.is_large_binary(array.type) else np.int32
    buffers = array.buffers()
    offsets = np.frombuffer(buffers[1], dtype=offset_type, count=array.offset + len(array) + 1)[array.offset :]
    offsets = offsets.astype(np.int64)
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] else np.zeros(0, np.uint8)
    return offsets - offsets[0], data[offsets[0] : offsets[-1]]


def _from_parts(offsets: np.ndarray, data: np.ndarray) -> pa.Array:
    return pa.Array.from_buffers(
        pa.large_binary(), len(offsets) - 1, [None, pa.py_buffer(offsets.astype(np.int64)), pa.py_buffer(data)]
    )


def _feature_entries(column: pa.Array, name: str) -> pa.Array:
    """Each row's `feature` map entry of Features for one column (field tag, length, entry)."""
    examples = pa.array(example_coder.RecordBatchToExamples(pa.RecordBatch.from_arrays([column], [name])), pa.binary())
    offsets, data = _binary_parts(examples)
    starts = offsets[:-1]
    header = np.full(len(starts), 2, dtype=np.int64)  # an Example of one feature: tag 0x0a, varint, entry
    longer = (data[starts + 1] & 0x80) != 0 if len(data) else np.zeros(0, dtype=bool)
    while longer.any():
        header += longer
        longer &= (data[starts + header - 1] & 0x80) != 0
    keep = np.ones(len(data), dtype=bool)
    for i in range(int(header.max(initial=0))):
        keep[starts[header > i] + i] = False
    return _from_parts(np.concatenate([[0], np.cumsum(np.diff(offsets) - header)]), data[keep])


def _examples(entries: list[pa.Array]) -> list[bytes]:
    """tf.Examples from per-column entries (in key order): tag 0x0a, varint length, Features."""
    features = pc.binary_join_element_wise(*entries, pa.scalar(b"", pa.large_binary()))
    offsets, data = _binary_parts(features)
    lengths = np.diff(offsets)
    varints = _varint_lengths(lengths)
    header_len = 1 + varints
    out = np.empty(len(data) + int(header_len.sum()), dtype=np.uint8)
    new_offsets = np.concatenate([[0], np.cumsum(lengths + header_len)])
    starts = new_offsets[:-1]
    out[starts] = 0x0A
    remaining = lengths.copy()
    for i in range(int(varints.max(initial=0))):
        rows = varints > i
        more = varints > i + 1
        out[starts[rows] + 1 + i] = (remaining[rows] & 0x7F) | (more[rows] * 0x80)
        remaining >>= 7
    body = np.ones(len(out), dtype=bool)
    for i in range(int(header_len.max(initial=0))):
        rows = header_len > i
        body[starts[rows] + i] = False
    out[body] = data
    return _from_parts(new_offsets, out).to_pylist()


def encode_file(path: str, names: Sequence[str], types: Types) -> Iterator[list[bytes]]:
    """The serialised tf.Examples of `path`'s lines, a batch at a time, as TFX would write them."""
    order = sorted(names)
    for batch in _batches(path, names):
        columns = [_values(batch.column(name), types[name]) for name in order]
        yield _examples([_feature_entries(column, name) for column, name in zip(columns, order)])
