"""Minimal reader for R's serialization format and lazy-load databases.

What it is for: tools/demo/corpus.py reads the public-domain books that
Debian ships as R package data (r-cran-janeaustenr, r-cran-tokenizers)
without needing R. A package's data/Rdata.rdx is a gzip-compressed RDS file
holding list(variables=, references=, compressed=); each variable maps to
(offset, length) in data/Rdata.rdb, where a record is a 4-byte big-endian
uncompressed size followed by the compressed serialized object (type 1:
zlib; type 2: one byte 'Z'/'2'/'0' then zlib/bzip2/raw; type 3: 'X'/'0'
then xz/raw).

Only the XDR ("X\\n") format, versions 2 and 3, is supported, and only the
object kinds that data sets use: NULL, vectors (logical, integer, double,
complex, character, list, raw), pairlists, symbols, environments (read but
returned as a dict of their frame), references and the two compact ALTREP
sequences. Anything else raises RDataError: this is a reader for trusted
Debian files, not a general R implementation.

Values come back as plain Python: character vectors as list[str|None]
(None = NA), integer/logical vectors as list[int|None], double vectors as
list[float], lists as RList (a list subclass with .attrs), pairlists as
list of (tag, value) pairs. Single-threaded, no global state.
"""

import bz2
import gzip
import lzma
import struct
import zlib

NA_INTEGER = -(2 ** 31)


class RDataError(Exception):
    """Raised for malformed or unsupported serialized R data."""


class RList(list):
    """An R vector (list or atomic) with its attributes in .attrs."""

    def __init__(self, items=(), attrs=None):
        super().__init__(items)
        self.attrs = attrs or {}

    def names(self):
        return self.attrs.get("names")


class RSymbol(str):
    """An R symbol (a name)."""


class REnv(dict):
    """An R environment: its frame as a dict."""


# SEXP type codes (R internals, serialize.c / Rinternals.h).
NILSXP, SYMSXP, LISTSXP, CLOSXP, ENVSXP, PROMSXP, LANGSXP = 0, 1, 2, 3, 4, 5, 6
SPECIALSXP, BUILTINSXP, CHARSXP, LGLSXP = 7, 8, 9, 10
INTSXP, REALSXP, CPLXSXP, STRSXP, DOTSXP = 13, 14, 15, 16, 17
VECSXP, EXPRSXP, BCODESXP, EXTPTRSXP, WEAKREFSXP, RAWSXP, S4SXP = (
    19, 20, 21, 22, 23, 24, 25)
REFSXP, NILVALUE_SXP, GLOBALENV_SXP, UNBOUNDVALUE_SXP = 255, 254, 253, 252
MISSINGARG_SXP, BASENAMESPACE_SXP, NAMESPACESXP, PACKAGESXP = 251, 250, 249, 248
PERSISTSXP, EMPTYENV_SXP, BASEENV_SXP = 247, 242, 241
ATTRLANGSXP, ATTRLISTSXP, ALTREP_SXP = 240, 239, 238

_PAIR_TYPES = (LISTSXP, LANGSXP, CLOSXP, PROMSXP, DOTSXP,
               ATTRLANGSXP, ATTRLISTSXP)
_SPECIAL_MARKERS = {
    GLOBALENV_SXP: "<GlobalEnv>", UNBOUNDVALUE_SXP: "<unbound>",
    MISSINGARG_SXP: "<missing>", BASENAMESPACE_SXP: "<base namespace>",
    EMPTYENV_SXP: "<emptyenv>", BASEENV_SXP: "<baseenv>",
}
_UTF8_MASK, _LATIN1_MASK, _BYTES_MASK, _ASCII_MASK = 1 << 3, 1 << 2, 1 << 1, 1 << 6


class _Reader:
    """Cursor over one serialized object (XDR big-endian)."""

    def __init__(self, data):
        self.data = data
        self.pos = 0
        self.refs = []
        self.native_encoding = "utf-8"

    def take(self, n):
        if n < 0 or self.pos + n > len(self.data):
            raise RDataError("truncated R data at byte %d" % self.pos)
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def int(self):
        return struct.unpack(">i", self.take(4))[0]

    def length(self):
        n = self.int()
        if n == -1:
            hi, lo = self.int(), self.int()
            n = (hi << 32) + lo
        if n < 0:
            raise RDataError("negative vector length")
        return n

    def header(self):
        magic = self.take(2)
        if magic != b"X\n":
            raise RDataError("only XDR serialization is supported, got %r"
                             % magic)
        version = self.int()
        self.int()  # writer R version
        self.int()  # minimal reader R version
        if version == 3:
            n = self.int()
            enc = self.take(n).decode("ascii", "replace").lower()
            self.native_encoding = "latin-1" if "latin" in enc else "utf-8"
        elif version != 2:
            raise RDataError("unsupported serialization version %d" % version)

    def item(self):
        flags = self.int()
        sxp = flags & 0xFF
        levels = flags >> 12
        has_attr = bool(flags & (1 << 9))
        has_tag = bool(flags & (1 << 10))
        if sxp == NILVALUE_SXP:
            return None
        if sxp in _SPECIAL_MARKERS:
            return _SPECIAL_MARKERS[sxp]
        if sxp == REFSXP:
            idx = flags >> 8
            if idx == 0:
                idx = self.int()
            if idx < 1 or idx > len(self.refs):
                raise RDataError("bad reference index %d" % idx)
            return self.refs[idx - 1]
        if sxp == SYMSXP:
            sym = RSymbol(self.item() or "")
            self.refs.append(sym)
            return sym
        if sxp in (PACKAGESXP, NAMESPACESXP, PERSISTSXP):
            if self.int() != 0:
                raise RDataError("bad string vector marker")
            names = [self.item() for _ in range(self.length())]
            self.refs.append(names)
            return names
        if sxp == ENVSXP:
            return self.env()
        if sxp in _PAIR_TYPES:
            return self.pairlist(has_attr, has_tag)
        if sxp == CHARSXP:
            return self.charsxp(levels)
        if sxp == ALTREP_SXP:
            return self.altrep()
        if sxp in (SPECIALSXP, BUILTINSXP):
            return "<builtin %s>" % self.take(self.int()).decode("ascii")
        value = self.vector(sxp)
        if has_attr:
            value = RList(value, _attrs(self.item()))
        return value

    def env(self):
        self.int()  # locked
        env = REnv()
        self.refs.append(env)
        self.item()  # enclosure
        frame = self.item()
        hashtab = self.item()
        self.item()  # attributes
        for part in (frame, hashtab):
            for binding in _flatten(part):
                for tag, val in binding:
                    env[tag] = val
        return env

    def pairlist(self, has_attr, has_tag):
        out = []
        while True:
            if has_attr:
                self.item()
            tag = self.item() if has_tag else None
            out.append((tag, self.item()))
            flags = self.int()
            sxp = flags & 0xFF
            if sxp == NILVALUE_SXP:
                return out
            if sxp not in _PAIR_TYPES:
                self.pos -= 4
                tail = self.item()
                out.append((None, tail))
                return out
            has_attr = bool(flags & (1 << 9))
            has_tag = bool(flags & (1 << 10))

    def charsxp(self, levels):
        n = self.int()
        if n == -1:
            return None
        raw = self.take(n)
        if levels & _LATIN1_MASK:
            return raw.decode("latin-1")
        if levels & (_UTF8_MASK | _ASCII_MASK):
            return raw.decode("utf-8")
        if levels & _BYTES_MASK:
            return raw.decode("latin-1")
        return raw.decode(self.native_encoding)

    def vector(self, sxp):
        n = self.length()
        if sxp in (LGLSXP, INTSXP):
            vals = struct.unpack(">%di" % n, self.take(4 * n))
            return [None if v == NA_INTEGER else v for v in vals]
        if sxp == REALSXP:
            return list(struct.unpack(">%dd" % n, self.take(8 * n)))
        if sxp == CPLXSXP:
            vals = struct.unpack(">%dd" % (2 * n), self.take(16 * n))
            return [complex(vals[i], vals[i + 1]) for i in range(0, 2 * n, 2)]
        if sxp == RAWSXP:
            return list(self.take(n))
        if sxp in (STRSXP, VECSXP, EXPRSXP):
            return [self.item() for _ in range(n)]
        if sxp == S4SXP:
            return []
        raise RDataError("unsupported SEXP type %d" % sxp)

    def altrep(self):
        info = self.item()
        state = self.item()
        attr = self.item()
        cls = info[0][1] if info else ""
        if cls == "compact_intseq":
            n, start, step = (int(v) for v in state)
            value = list(range(start, start + n * step, step)) if step else []
        elif cls == "compact_realseq":
            n, start, step = state
            value = [start + i * step for i in range(int(n))]
        elif cls.startswith("wrap_"):
            value = state[0]
        else:
            raise RDataError("unsupported ALTREP class %r" % cls)
        if attr is not None:
            value = RList(value, _attrs(attr))
        return value


def _flatten(part):
    """Bindings from an environment frame (pairlist) or hash table (list)."""
    if part is None or isinstance(part, str):
        return []
    if part and isinstance(part[0], tuple):
        return [part]
    return [p for p in part if p is not None and not isinstance(p, str)]


def _attrs(pairs):
    if not pairs:
        return {}
    return {str(tag): val for tag, val in pairs if tag is not None}


def unserialize(data):
    """Parse one serialized R object (bytes, already decompressed)."""
    reader = _Reader(data)
    reader.header()
    return reader.item()


def read_rds(path):
    """Read an .rds file (gzip-compressed or plain XDR serialization)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return unserialize(data)


def _decompress(blob, kind):
    if len(blob) < 4:
        raise RDataError("lazy-load record too short")
    size = struct.unpack(">I", blob[:4])[0]
    body = blob[4:]
    if kind in (2, 3):
        tag, body = body[:1], body[1:]
        if tag == b"0":
            out = body
        elif tag == b"Z":
            out = zlib.decompress(body)
        elif tag == b"2":
            out = bz2.decompress(body)
        elif tag == b"X":
            out = lzma.decompress(body)
        else:
            raise RDataError("unknown lazy-load compression tag %r" % tag)
    elif kind == 1:
        out = zlib.decompress(body)
    else:
        out = body
    if len(out) != size:
        raise RDataError("lazy-load record size mismatch")
    return out


def read_lazyload(prefix):
    """Read every variable of an R lazy-load database (prefix.rdx/.rdb).

    Returns a dict name -> value.
    """
    index = read_rds(prefix + ".rdx")
    idx = dict(zip(index.names(), index))
    variables = idx["variables"]
    kind = idx.get("compressed") or [1]
    kind = int(kind[0]) if isinstance(kind, list) else int(kind)
    with open(prefix + ".rdb", "rb") as f:
        rdb = f.read()
    out = {}
    for name, (offset, length) in zip(variables.names(), variables):
        blob = rdb[offset:offset + length]
        out[name] = unserialize(_decompress(blob, kind))
    return out
