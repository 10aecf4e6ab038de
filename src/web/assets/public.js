// The public timestamp page: hash a file in the browser (it never leaves the machine), ask
// for a token over the digest, offer the .tsr; verify a token against a file. Without
// JavaScript the same forms post a pasted digest or base64 token and get a download or a
// result page back.
(function () {
  "use strict";
  // WebCrypto hashes a file in one piece, so it is used up to this size; larger files (and
  // any file where WebCrypto is missing: plain HTTP off loopback) go through the streaming
  // SHA-256 in slices.
  var ONE_SHOT_LIMIT = 16 * 1024 * 1024;
  var SLICE = 4 * 1024 * 1024;
  var NAMES = { sha256: "SHA-256", sha384: "SHA-384", sha512: "SHA-512" };

  function hex(buf) {
    var b = new Uint8Array(buf), s = "";
    for (var i = 0; i < b.length; i++) s += (b[i] < 16 ? "0" : "") + b[i].toString(16);
    return s;
  }
  function toBase64(bytes) {
    var s = "";
    for (var i = 0; i < bytes.length; i += 0x8000) {
      s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(s);
  }
  function fromBase64(text) {
    var s = atob(text), out = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  function say(el, text, cls) {
    el.textContent = "";
    var p = document.createElement("p");
    if (cls) p.className = cls;
    p.textContent = text;
    el.appendChild(p);
  }

  // The digest of `file` under `alg`, hex, and how it was computed.
  async function digest(file, alg, progress) {
    var subtle = window.crypto && window.crypto.subtle;
    if (subtle && NAMES[alg] && file.size <= ONE_SHOT_LIMIT) {
      return { hex: hex(await subtle.digest(NAMES[alg], await file.arrayBuffer())), how: "WebCrypto" };
    }
    if (alg !== "sha256") {
      throw new Error("this browser can hash this file locally with SHA-256 only; choose sha256 or paste a digest");
    }
    var h = new window.StampdSha256();
    for (var off = 0; off < file.size; off += SLICE) {
      h.update(new Uint8Array(await file.slice(off, off + SLICE).arrayBuffer()));
      progress(Math.min(1, (off + SLICE) / file.size));
    }
    return { hex: hex(h.digest()), how: "streaming SHA-256" };
  }

  async function post(form, fields) {
    var r = await fetch(form.action, {
      method: "POST",
      headers: { "Accept": "application/json" },
      body: new URLSearchParams(fields),
    });
    var j;
    try { j = await r.json(); } catch (e) { throw new Error("HTTP " + r.status + " " + r.statusText); }
    if (!r.ok && j.error) throw new Error(j.error);
    return j;
  }

  function facts(el, rows) {
    var dl = document.createElement("dl");
    dl.className = "facts";
    rows.forEach(function (row) {
      var dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = row[0];
      dd.textContent = row[1];
      dl.appendChild(dt);
      dl.appendChild(dd);
    });
    el.appendChild(dl);
  }

  var stamp = document.getElementById("stamp");
  if (stamp) {
    var result = document.getElementById("stamp-result");
    stamp.addEventListener("submit", async function (ev) {
      ev.preventDefault();
      var f = stamp.elements, file = f.file.files[0], alg = f.hash.value;
      try {
        var dg = f.digest.value.trim(), how = "pasted";
        if (file) {
          say(result, "hashing " + file.name + " locally…");
          var d = await digest(file, alg, function (p) {
            say(result, "hashing " + file.name + " locally… " + Math.round(p * 100) + "%");
          });
          dg = d.hex;
          how = d.how;
          f.digest.value = dg;
        }
        if (!dg) throw new Error("choose a file, or paste its digest");
        say(result, "asking for a timestamp…");
        var j = await post(stamp, { hash: alg, digest: dg });
        if (!j.granted) throw new Error(j.error || "refused");
        result.textContent = "";
        var ok = document.createElement("p");
        ok.className = "ok";
        ok.id = "stamp-granted";
        ok.textContent = "Timestamp granted";
        result.appendChild(ok);
        facts(result, [["genTime", j.gen_time], ["serial", j.serial], ["policy", j.policy],
                       ["TSA", j.tsa], ["digest (" + alg + ")", dg], ["hashed with", how]]);
        var a = document.createElement("a");
        a.id = "stamp-download";
        a.href = URL.createObjectURL(new Blob([fromBase64(j.tsr)], { type: "application/timestamp-reply" }));
        a.download = (file ? file.name : "stamp") + ".tsr";
        a.textContent = "Download " + a.download;
        var p = document.createElement("p");
        p.appendChild(a);
        result.appendChild(p);
      } catch (e) {
        say(result, e.message, "error");
      }
    });
  }

  var verify = document.getElementById("verify");
  if (verify) {
    var vresult = document.getElementById("verify-result");
    verify.addEventListener("submit", async function (ev) {
      ev.preventDefault();
      var f = verify.elements, token = f.token_file.files[0], data = f.data_file.files[0];
      try {
        var fields = { token: f.token.value.trim(), sha256: f.sha256.value.trim(),
                       sha384: f.sha384.value.trim(), sha512: f.sha512.value.trim() };
        if (token) fields.token = toBase64(new Uint8Array(await token.arrayBuffer()));
        if (!fields.token) throw new Error("choose a .tsr file, or paste one in base64");
        if (data) {
          say(vresult, "hashing " + data.name + " locally…");
          var noop = function () {};
          fields.sha256 = (await digest(data, "sha256", noop)).hex;
          if (window.crypto && window.crypto.subtle && data.size <= ONE_SHOT_LIMIT) {
            fields.sha384 = (await digest(data, "sha384", noop)).hex;
            fields.sha512 = (await digest(data, "sha512", noop)).hex;
          }
        }
        var j = await post(verify, fields);
        vresult.textContent = "";
        var head = document.createElement("p");
        head.id = "verify-verdict";
        head.className = j.valid ? "ok" : "bad";
        head.textContent = j.valid ? "Valid: the token is over this data and verifies"
                                   : "Invalid: " + (j.error || "a check failed");
        vresult.appendChild(head);
        var ul = document.createElement("ul");
        ul.className = "checks";
        (j.checks || []).forEach(function (c) {
          var li = document.createElement("li");
          li.className = c.passed ? "pass" : "fail";
          li.textContent = c.check + ": " + c.detail;
          ul.appendChild(li);
        });
        vresult.appendChild(ul);
        if (j.token) {
          facts(vresult, [["genTime", j.token.gen_time], ["serial", j.token.serial],
                          ["policy", j.token.policy]]);
        }
      } catch (e) {
        say(vresult, e.message, "error");
      }
    });
  }
})();
