"""LZF decompression (the format of Marc Lehmann's liblzf, used by PCL's ``binary_compressed``
.pcd files), in plain Python: no compiled dependency, so it runs wherever numpy does.

A stream is a sequence of chunks, each led by a control byte ``c``:

- ``c < 32``: a literal run, the next ``c + 1`` bytes are copied;
- otherwise a back reference: length ``(c >> 5) + 2`` (when ``c >> 5 == 7`` the next byte adds
  to it), offset ``((c & 31) << 8) + next byte + 1`` back from the end of the output; the copy
  may overlap its own output (a run).
"""
from __future__ import annotations


class LzfError(ValueError):
    """The data is not a valid LZF stream of the announced size."""


def decompress(data: bytes, size: int) -> bytes:
    """Decompress ``data`` into exactly ``size`` bytes, or raise :class:`LzfError`."""
    src = memoryview(bytes(data))
    n = len(src)
    out = bytearray()
    ip = 0
    while ip < n:
        ctrl = src[ip]
        ip += 1
        if ctrl < 32:
            run = ctrl + 1
            if ip + run > n:
                raise LzfError(f"literal run of {run} bytes at input byte {ip - 1} passes the end "
                               f"of the {n}-byte stream")
            out += src[ip:ip + run]
            ip += run
        else:
            length = ctrl >> 5
            if length == 7:
                if ip >= n:
                    raise LzfError("stream ends inside a back reference")
                length += src[ip]
                ip += 1
            if ip >= n:
                raise LzfError("stream ends inside a back reference")
            back = ((ctrl & 31) << 8) + src[ip] + 1
            ip += 1
            length += 2
            start = len(out) - back
            if start < 0:
                raise LzfError(f"back reference {back} bytes before the start of the output "
                               f"(at output byte {len(out)})")
            if back >= length:
                out += out[start:start + length]
            else:  # overlapping: the reference repeats the last `back` bytes
                chunk = out[start:]
                reps, rest = divmod(length, back)
                out += chunk * reps + chunk[:rest]
        if len(out) > size:
            raise LzfError(f"decompresses to more than the announced {size} bytes")
    if len(out) != size:
        raise LzfError(f"decompresses to {len(out)} bytes, {size} announced")
    return bytes(out)


def compress_literal(data: bytes) -> bytes:
    """A valid (uncompressed) LZF stream of ``data``: literal runs only (for writing files that
    any LZF reader accepts)."""
    out = bytearray()
    for i in range(0, len(data), 32):
        chunk = data[i:i + 32]
        out.append(len(chunk) - 1)
        out += chunk
    return bytes(out)
