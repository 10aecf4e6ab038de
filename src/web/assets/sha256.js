// Streaming SHA-256 (FIPS 180-4 §6.2) for the public pages: files too large for WebCrypto's
// one-shot digest, and pages served over plain HTTP from a non-loopback address, where
// browsers offer no WebCrypto. Written for stampd; the result is checked against openssl in
// the browser tests. Usage: var h = new StampdSha256(); h.update(u8); ...; h.digest().
(function () {
  "use strict";
  var K = new Uint32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2]);

  function Sha256() {
    this.h = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                              0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
    this.w = new Uint32Array(64);
    this.buf = new Uint8Array(64);
    this.n = 0;      // bytes waiting in buf
    this.len = 0;    // bytes hashed so far (exact up to 2^53)
  }

  Sha256.prototype.block = function (p, o) {
    var w = this.w, h = this.h, i, t1, t2;
    for (i = 0; i < 16; i++) {
      w[i] = (p[o + 4 * i] << 24) | (p[o + 4 * i + 1] << 16) | (p[o + 4 * i + 2] << 8) | p[o + 4 * i + 3];
    }
    for (i = 16; i < 64; i++) {
      var x = w[i - 15], y = w[i - 2];
      var s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
      var s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (i = 0; i < 64; i++) {
      t1 = (k + (((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))) +
            ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
      t2 = ((((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) +
            ((a & b) ^ (a & c) ^ (b & c))) | 0;
      k = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += k;
  };

  Sha256.prototype.update = function (data) {
    var i = 0, n = data.length;
    this.len += n;
    if (this.n > 0) {
      while (this.n < 64 && i < n) this.buf[this.n++] = data[i++];
      if (this.n < 64) return this;
      this.block(this.buf, 0);
      this.n = 0;
    }
    for (; i + 64 <= n; i += 64) this.block(data, i);
    while (i < n) this.buf[this.n++] = data[i++];
    return this;
  };

  Sha256.prototype.digest = function () {
    var hi = Math.floor(this.len / 0x20000000), lo = (this.len % 0x20000000) * 8;
    this.buf[this.n++] = 0x80;
    if (this.n > 56) {
      while (this.n < 64) this.buf[this.n++] = 0;
      this.block(this.buf, 0);
      this.n = 0;
    }
    while (this.n < 56) this.buf[this.n++] = 0;
    for (var j = 0; j < 4; j++) {
      this.buf[56 + j] = (hi >>> (24 - 8 * j)) & 0xff;
      this.buf[60 + j] = (lo >>> (24 - 8 * j)) & 0xff;
    }
    this.block(this.buf, 0);
    var out = new Uint8Array(32);
    for (var i = 0; i < 8; i++) {
      out[4 * i] = this.h[i] >>> 24; out[4 * i + 1] = this.h[i] >>> 16;
      out[4 * i + 2] = this.h[i] >>> 8; out[4 * i + 3] = this.h[i];
    }
    return out;
  };

  window.StampdSha256 = Sha256;
})();
