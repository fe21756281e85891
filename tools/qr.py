"""A small QR Code encoder (ISO/IEC 18004): byte mode, error correction level M, versions 1..10.

    m = encode("https://hall.example/t/A001")   # list of rows, each a list of 0/1 (1 = dark)
    svg(m)                                      # the symbol as an SVG document, 4-module quiet zone

Enough for what a ticket prints (a URL of a few dozen bytes: version 3..4). The panel draws the
ticket's QR the way the printer would, so a person can scan it off the screen. Reed-Solomon
over GF(256) (polynomial 0x11D), all eight masks scored with the standard's four penalty rules.
Longer data (more than 213 bytes) raises ValueError rather than print a symbol we do not test.
"""

# (EC codewords per block, [(blocks, data codewords per block), ...]) for level M
_BLOCKS = {
    1: (10, [(1, 16)]), 2: (16, [(1, 28)]), 3: (26, [(1, 44)]), 4: (18, [(2, 32)]),
    5: (24, [(2, 43)]), 6: (16, [(4, 27)]), 7: (18, [(4, 31)]), 8: (22, [(2, 38), (2, 39)]),
    9: (22, [(3, 36), (2, 37)]), 10: (26, [(4, 43), (1, 44)]),
}
_ALIGN = {1: [], 2: [6, 18], 3: [6, 22], 4: [6, 26], 5: [6, 30], 6: [6, 34],
          7: [6, 22, 38], 8: [6, 24, 42], 9: [6, 26, 46], 10: [6, 28, 50]}
_EC_M = 0          # the format information's two EC-level bits: L=01, M=00, Q=11, H=10
MAX_VERSION = 10

# GF(256) with the primitive polynomial x^8 + x^4 + x^3 + x^2 + 1
_EXP = [0] * 512
_LOG = [0] * 256
_x = 1
for _i in range(255):
    _EXP[_i] = _x
    _LOG[_x] = _i
    _x <<= 1
    if _x & 0x100:
        _x ^= 0x11D
for _i in range(255, 512):
    _EXP[_i] = _EXP[_i - 255]


def gf_mul(a, b):
    return 0 if a == 0 or b == 0 else _EXP[_LOG[a] + _LOG[b]]


def rs_generator(n):
    """Coefficients (highest power first, leading 1) of (x - a^0)(x - a^1)...(x - a^(n-1))."""
    g = [1]
    for i in range(n):
        nxt = g + [0]
        for j, c in enumerate(g):
            nxt[j + 1] ^= gf_mul(c, _EXP[i])
        g = nxt
    return g


def rs_remainder(data, n):
    """The n error-correction codewords: data(x) * x^n mod generator(x)."""
    gen = rs_generator(n)
    rem = list(data) + [0] * n
    for i in range(len(data)):
        c = rem[i]
        if c:
            for j in range(1, n + 1):
                rem[i + j] ^= gf_mul(gen[j], c)
    return rem[len(data):]


def _bch(value, poly, degree):
    """value * x^degree mod poly (the BCH check bits of format and version information)."""
    rem = value << degree
    top = poly.bit_length() - 1
    for bit in range(rem.bit_length() - 1, top - 1, -1):
        if rem >> bit & 1:
            rem ^= poly << (bit - top)
    return rem


def format_bits(mask, ec=_EC_M):
    """The 15 format information bits (EC level + mask, BCH(15,5), XOR 101010000010010)."""
    data = ec << 3 | mask
    return (data << 10 | _bch(data, 0x537, 10)) ^ 0x5412


def version_bits(version):
    """The 18 version information bits (versions 7 and up, BCH(18,6))."""
    return version << 12 | _bch(version, 0x1F25, 12)


def data_capacity(version):
    ec, groups = _BLOCKS[version]
    return sum(n * k for n, k in groups)


def choose_version(nbytes):
    for v in range(1, MAX_VERSION + 1):
        count_bits = 8 if v < 10 else 16
        if 4 + count_bits + 8 * nbytes <= 8 * data_capacity(v):
            return v
    raise ValueError("QR: %d bytes do not fit version %d-M (at most 213 bytes)" % (nbytes, MAX_VERSION))


def data_codewords(data, version):
    """Mode indicator, count, the bytes, terminator and pad codewords 0xEC 0x11."""
    cap = data_capacity(version)
    bits = []

    def put(value, n):
        bits.extend((value >> (n - 1 - i)) & 1 for i in range(n))

    put(0b0100, 4)
    put(len(data), 8 if version < 10 else 16)
    for b in data:
        put(b, 8)
    put(0, min(4, cap * 8 - len(bits)))
    put(0, -len(bits) % 8)
    out = [int("".join(map(str, bits[i:i + 8])), 2) for i in range(0, len(bits), 8)]
    pad = (0xEC, 0x11)
    while len(out) < cap:
        out.append(pad[(len(out) - len(bits) // 8) % 2])
    return out


def codewords(data, version):
    """Final sequence: data codewords of the blocks interleaved, then their EC codewords."""
    ec, groups = _BLOCKS[version]
    words = data_codewords(data, version)
    blocks, at = [], 0
    for n, k in groups:
        for _ in range(n):
            blocks.append(words[at:at + k])
            at += k
    ecs = [rs_remainder(b, ec) for b in blocks]
    out = []
    for i in range(max(len(b) for b in blocks)):
        out.extend(b[i] for b in blocks if i < len(b))
    for i in range(ec):
        out.extend(e[i] for e in ecs)
    return out


_MASKS = (
    lambda r, c: (r + c) % 2 == 0,
    lambda r, c: r % 2 == 0,
    lambda r, c: c % 3 == 0,
    lambda r, c: (r + c) % 3 == 0,
    lambda r, c: (r // 2 + c // 3) % 2 == 0,
    lambda r, c: r * c % 2 + r * c % 3 == 0,
    lambda r, c: (r * c % 2 + r * c % 3) % 2 == 0,
    lambda r, c: ((r + c) % 2 + r * c % 3) % 2 == 0,
)


class _Symbol:
    def __init__(self, version):
        self.version = version
        self.size = n = 17 + 4 * version
        self.m = [[0] * n for _ in range(n)]
        self.fixed = [[False] * n for _ in range(n)]
        self._function_patterns()

    def set(self, r, c, dark):
        self.m[r][c] = 1 if dark else 0
        self.fixed[r][c] = True

    def _function_patterns(self):
        n = self.size
        for i in range(n):      # timing patterns
            self.set(6, i, i % 2 == 0)
            self.set(i, 6, i % 2 == 0)
        for r0, c0 in ((0, 0), (0, n - 7), (n - 7, 0)):     # finders with their separators
            for dr in range(-1, 8):
                for dc in range(-1, 8):
                    r, c = r0 + dr, c0 + dc
                    if 0 <= r < n and 0 <= c < n:
                        ring = max(abs(dr - 3), abs(dc - 3))
                        self.set(r, c, ring != 2 and ring != 4)
        pos = _ALIGN[self.version]
        for r in pos:
            for c in pos:
                if (r, c) in ((6, 6), (6, pos[-1]), (pos[-1], 6)):
                    continue        # where a finder is
                for dr in range(-2, 3):
                    for dc in range(-2, 3):
                        self.set(r + dr, c + dc, max(abs(dr), abs(dc)) != 1)
        self.format(0)          # reserve the format areas (rewritten once the mask is chosen)
        if self.version >= 7:
            bits = version_bits(self.version)
            for i in range(18):
                dark = bits >> i & 1
                a, b = n - 11 + i % 3, i // 3
                self.set(b, a, dark)    # top right block
                self.set(a, b, dark)    # bottom left block

    def format(self, mask):
        n = self.size
        bits = format_bits(mask)
        bit = [bits >> i & 1 for i in range(15)]
        # around the top-left finder (bit 0 = least significant)
        for i in range(6):
            self.set(i, 8, bit[i])
        self.set(7, 8, bit[6])
        self.set(8, 8, bit[7])
        self.set(8, 7, bit[8])
        for i in range(9, 15):
            self.set(8, 14 - i, bit[i])
        # split between the top-right and bottom-left finders
        for i in range(8):
            self.set(8, n - 1 - i, bit[i])
        for i in range(8, 15):
            self.set(n - 15 + i, 8, bit[i])
        self.set(n - 8, 8, 1)   # the dark module

    def place(self, words):
        n = self.size
        i, total = 0, len(words) * 8
        right = n - 1
        while right >= 1:
            if right == 6:
                right = 5       # the vertical timing pattern takes a whole column
            upward = (right + 1) & 2 == 0
            for vert in range(n):
                r = n - 1 - vert if upward else vert
                for c in (right, right - 1):
                    if not self.fixed[r][c] and i < total:
                        self.m[r][c] = words[i >> 3] >> (7 - (i & 7)) & 1
                        i += 1
            right -= 2

    def masked(self, mask):
        f = _MASKS[mask]
        out = [row[:] for row in self.m]
        for r in range(self.size):
            for c in range(self.size):
                if not self.fixed[r][c] and f(r, c):
                    out[r][c] ^= 1
        return out


_FINDERISH = ([1, 0, 1, 1, 1, 0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 0, 1, 1, 1, 0, 1])


def penalty(m):
    """The standard's four penalty scores summed (lower is better)."""
    n = len(m)
    score = 0
    lines = m + [list(col) for col in zip(*m)]
    for line in lines:
        run, prev = 0, None
        for v in line:          # N1: five or more alike in a row or column
            if v == prev:
                run += 1
            else:
                if run >= 5:
                    score += 3 + run - 5
                run, prev = 1, v
        if run >= 5:
            score += 3 + run - 5
        for i in range(n - 10):  # N3: 1:1:3:1:1 with four light modules on one side
            if line[i:i + 11] in _FINDERISH:
                score += 40
    for r in range(n - 1):      # N2: 2x2 blocks of one colour
        for c in range(n - 1):
            v = m[r][c]
            if v == m[r][c + 1] == m[r + 1][c] == m[r + 1][c + 1]:
                score += 3
    dark = sum(map(sum, m))     # N4: 10 per 5 % of distance from half dark
    score += 10 * (abs(dark * 100 - 50 * n * n) // (5 * n * n))
    return score


def encode(data, mask=None):
    """The symbol for data (str: UTF-8, or bytes) as rows of 0/1; mask None: the best of eight."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    version = choose_version(len(data))
    sym = _Symbol(version)
    sym.place(codewords(data, version))
    best = None
    for k in (range(8) if mask is None else (mask,)):
        sym.format(k)
        m = sym.masked(k)
        p = penalty(m)
        if best is None or p < best[0]:
            best = (p, k, m)
    sym.format(best[1])     # the chosen mask's format bits, into the chosen matrix too
    return sym.masked(best[1])


def svg_path(m, quiet=4):
    """An SVG path drawing every dark module as a unit square (offset by the quiet zone)."""
    parts = []
    for r, row in enumerate(m):
        c = 0
        while c < len(row):
            if row[c]:
                start = c
                while c < len(row) and row[c]:
                    c += 1
                parts.append("M%d %dh%dv1h-%dz" % (start + quiet, r + quiet, c - start, c - start))
            else:
                c += 1
    return "".join(parts)


def svg(m, quiet=4, scale=4):
    n = len(m) + 2 * quiet
    return ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" '
            'shape-rendering="crispEdges"><rect width="%d" height="%d" fill="#fff"/>'
            '<path d="%s" fill="#000"/></svg>' % (n, n, n * scale, n * scale, n, n, svg_path(m, quiet)))


if __name__ == "__main__":
    import sys
    text = " ".join(sys.argv[1:]) or "https://hall.example/t/A001"
    sys.stdout.write(svg(encode(text)) + "\n")
