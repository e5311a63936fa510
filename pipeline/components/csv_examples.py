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
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems
from pyarrow import csv as pa_csv
from tfx_bsl.coders import csv_decoder

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


# A tf.Example on the wire: Example.features (field 1) holds Features, whose repeated field 1 holds
# one map entry per feature: key (field 1), then the Feature (field 2) with one list field
# (bytes_list 1, float_list 2, int64_list 3) holding the packed values (field 1). Every length is a
# varint; a deterministic serialisation orders the entries by key.
_LIST_TAG = {ColumnType.STRING: 0x0A, ColumnType.FLOAT: 0x12, ColumnType.INT: 0x1A}


def _varint_lengths(values: np.ndarray) -> np.ndarray:
    """Bytes of each (unsigned 64-bit) value as a protobuf varint."""
    values = values.astype(np.uint64)
    lengths = np.ones(len(values), dtype=np.int64)
    for shift in range(7, 64, 7):
        lengths += values >= np.uint64(1 << shift)
    return lengths


def _varint(value: int) -> bytes:
    """A non-negative int as a protobuf varint."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes([*out, value])


class _Rows:
    """One byte string per row, written side by side: constants and varints at each row's end."""

    def __init__(self, rows: int, width: int) -> None:
        self.bytes = np.zeros((rows, width), dtype=np.uint8)
        self.lengths = np.zeros(rows, dtype=np.int64)

    def tag(self, byte: int, rows: np.ndarray) -> _Rows:
        self.bytes[rows, self.lengths[rows]] = byte
        self.lengths[rows] += 1
        return self

    def varint(self, values: np.ndarray, rows: np.ndarray) -> _Rows:
        """Append `values[rows]` (two's complement for negatives, as protobuf's int64) as varints."""
        values = values[rows].astype(np.int64).view(np.uint64)
        sizes = _varint_lengths(values)
        for i in range(int(sizes.max(initial=0))):
            more = sizes > i
            at = rows[more]
            low = (values[more] >> np.uint64(7 * i)) & np.uint64(0x7F)
            self.bytes[at, self.lengths[at]] = low.astype(np.uint8) | np.where(sizes[more] > i + 1, 0x80, 0).astype(np.uint8)
            self.lengths[at] += 1
        return self

    def array(self) -> pa.Array:
        data = self.bytes[np.arange(self.bytes.shape[1]) < self.lengths[:, None]]
        offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        return pa.Array.from_buffers(pa.large_binary(), len(self.lengths), [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _payloads(cells: pa.Array, kind: ColumnType, present: np.ndarray) -> pa.Array:
    """Each row's packed value bytes: a varint, a little-endian float32 or the text; empty if no value."""
    rows = np.flatnonzero(present)
    if kind == ColumnType.STRING:
        return pc.fill_null(cells.cast(pa.large_binary()), pa.scalar(b"", pa.large_binary()))
    if kind == ColumnType.INT:
        values = pc.fill_null(_integers(cells), 0).to_numpy(zero_copy_only=False)
        return _Rows(len(cells), 10).varint(values, rows).array()
    floats = pc.fill_null(pc.cast(cells, pa.float64()).cast(pa.float32(), safe=False), 0.0)
    packed = _Rows(len(cells), 4)
    packed.bytes[:] = floats.to_numpy(zero_copy_only=False).astype("<f4").view(np.uint8).reshape(-1, 4)
    packed.lengths[rows] = 4
    return packed.array()


Piece = pa.Array | pa.Scalar  # per row, or the same bytes in every row


def _entries(cells: pa.Array, name: str, kind: ColumnType) -> list[Piece]:
    """Each row's map entry of Features for one column, as pieces to join: framing, key, framing, values."""
    head = b"\x0a" + _varint(len(name.encode())) + name.encode() + b"\x12"  # the key, the Feature's tag
    if kind == ColumnType.UNKNOWN:  # the key and a Feature with no kind (zero bytes): the same in every row
        return [pa.scalar(b"\x0a" + _varint(len(head) + 1) + head + b"\x00", pa.large_binary())]
    rows = np.arange(len(cells))
    present = pc.is_valid(cells).to_numpy(zero_copy_only=False)
    payloads = _payloads(cells, kind, present)
    payload_lengths = pc.binary_length(payloads).to_numpy(zero_copy_only=False).astype(np.int64)
    list_lengths = np.where(present, 1 + _varint_lengths(payload_lengths) + payload_lengths, 0)
    feature_lengths = 1 + _varint_lengths(list_lengths) + list_lengths
    entry_lengths = len(head) + _varint_lengths(feature_lengths) + feature_lengths
    entry = _Rows(len(cells), 11).tag(0x0A, rows).varint(entry_lengths, rows)
    feature = _Rows(len(cells), 33).varint(feature_lengths, rows).tag(_LIST_TAG[kind], rows).varint(list_lengths, rows)
    with_value = np.flatnonzero(present)
    feature.tag(0x0A, with_value).varint(payload_lengths, with_value)
    return [entry.array(), pa.scalar(head, pa.large_binary()), feature.array(), payloads]


def _examples(count: int, pieces: list[Piece]) -> list[bytes]:
    """`count` serialised tf.Examples from the pieces of their feature entries (in key order)."""
    rows = np.arange(count)
    lengths = np.zeros(len(rows), dtype=np.int64)
    for piece in pieces:
        lengths += len(piece.as_py()) if isinstance(piece, pa.Scalar) else pc.binary_length(piece).to_numpy(zero_copy_only=False)
    header = _Rows(len(rows), 11).tag(0x0A, rows).varint(lengths, rows).array()
    return pc.binary_join_element_wise(header, *pieces, pa.scalar(b"", pa.large_binary())).to_pylist()


def encode_file(path: str, names: Sequence[str], types: Types) -> Iterator[list[bytes]]:
    """The serialised tf.Examples of `path`'s lines, a batch at a time, as TFX would write them."""
    order = sorted(names)
    for batch in _batches(path, names):
        pieces = [piece for name in order for piece in _entries(batch.column(name), name, types[name])]
        yield _examples(batch.num_rows, pieces)
