#!/usr/bin/env python3
"""An independent GPT-2 byte-level BPE, and the fixture tests/test_gpt2bpe.c reads.

Needs only Debian's python3 and python3-regex (the `regex` module, for \\p{L} and
\\p{N}); CI does not run it: it reads the committed files this writes.

  1. learns a small byte-level BPE vocabulary (classic BPE over the counts of
     GPT-2's pre-tokenizer pieces of TRAIN_TEXT) and writes it in the real GPT-2
     formats: gpt2_vocab.json (token -> id, tokens in GPT-2's byte-to-unicode
     alphabet), gpt2_merges.txt ("#version: 0.2" then "a b" per line, in rank
     order), and the same tokenizer as a Hugging Face gpt2_tokenizer.json (model
     type BPE, ByteLevel pre-tokenizer); "<|endoftext|>" is the last id;
  2. encodes the CASES with encoder.py's algorithm (bpe() copied in its logic)
     and writes gpt2bpe_fixture.txt: per case a line "text <hex bytes>" and a line
     "ids <ids>".

Text that is not valid UTF-8, and very long pieces, are handled as data/gpt2bpe.h
specifies (GPT-2 itself needs str): the bytes are decoded with surrogateescape;
each escaped byte (one that is not part of a valid character) is a piece of its
own; each run of valid characters is cut by GPT-2's pattern, matched one match
after the other from the run's start; a match longer than PIECE_MAX bytes is cut
at the last character boundary within PIECE_MAX bytes and matching starts again
there.

Usage: python3 tests/ref/gpt2bpe_reference.py tests/fixtures
"""
import json
import os
import sys

import regex

PIECE_MAX = 1024
PAT = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
EOD = "<|endoftext|>"
N_MERGES = 320


def bytes_to_unicode():
    """GPT-2's encoder.py bytes_to_unicode()."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) +
          list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


BYTE_ENCODER = bytes_to_unicode()


def is_escape(ch):
    return 0xDC80 <= ord(ch) <= 0xDCFF


def pieces(b):
    """The pieces (bytes) of text b."""
    s = b.decode("utf-8", "surrogateescape")
    out = []
    i = 0
    while i < len(s):
        if is_escape(s[i]):
            out.append(bytes([ord(s[i]) - 0xDC00]))
            i += 1
            continue
        j = i
        while j < len(s) and not is_escape(s[j]):
            j += 1
        seg = s[i:j]
        k = 0
        while k < len(seg):
            e = PAT.match(seg, k).end()
            assert e > k
            if len(seg[k:e].encode("utf-8")) > PIECE_MAX:
                nb, e = 0, k
                while nb + len(seg[e].encode("utf-8")) <= PIECE_MAX:
                    nb += len(seg[e].encode("utf-8"))
                    e += 1
            out.append(seg[k:e].encode("utf-8"))
            k = e
        i = j
    return out


def bpe(token, ranks):
    """encoder.py's Encoder.bpe(), without the cache: token is a str of symbols."""
    word = tuple(token)
    while len(word) > 1:
        pairs = set(zip(word, word[1:]))
        bigram = min(pairs, key=lambda pair: ranks.get(pair, float("inf")))
        if bigram not in ranks:
            break
        first, second = bigram
        new_word = []
        i = 0
        while i < len(word):
            try:
                j = word.index(first, i)
            except ValueError:
                new_word.extend(word[i:])
                break
            new_word.extend(word[i:j])
            i = j
            if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                new_word.append(first + second)
                i += 2
            else:
                new_word.append(word[i])
                i += 1
        word = tuple(new_word)
    return word


def encode(b, encoder, ranks):
    ids = []
    for p in pieces(b):
        ids.extend(encoder[t] for t in bpe("".join(BYTE_ENCODER[x] for x in p), ranks))
    return ids


def learn(text, n_merges):
    """Classic BPE over piece counts; ties: the pair first in code-point order."""
    counts = {}
    for p in pieces(text):
        w = tuple(BYTE_ENCODER[x] for x in p)
        counts[w] = counts.get(w, 0) + 1
    merges = []
    for _ in range(n_merges):
        pc = {}
        for w, c in counts.items():
            for pair in zip(w, w[1:]):
                pc[pair] = pc.get(pair, 0) + c
        if not pc:
            break
        best = min(pc, key=lambda pr: (-pc[pr], pr))
        merges.append(best)
        new = {}
        for w, c in counts.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new[tuple(out)] = new.get(tuple(out), 0) + c
        counts = new
    return merges


TRAIN_TEXT = ("""In the beginning God created the heaven and the earth. And the earth was
without form, and void; and darkness was upon the face of the deep. And the Spirit
of God moved upon the face of the waters. And God said, Let there be light: and
there was light. It's the 1st day; they're here, we've seen 12345 of them, I'm sure
you'll see what he'd do. Don't worry: 3.14159 and 2.71828 are numbers.
Le café est très bon à Paris; naïve résumé, crème brûlée, Müller, Straße, Ærø.
日本語のテキストです。中文文本。한국어 텍스트. Emoji: 👍🏽 🎉 ❤️.
    Indented code:  x = y + 1  # comment
\t\ttabs and   runs   of   spaces.\n\n\n""" * 3).encode("utf-8")

CASES = [
    b"Hello world",
    "In the beginning God created the heaven and the earth.".encode(),
    b"I'm sure you're right; they've gone, we'll see, he'd say it's 'sdone' don't",
    b"'S 'T 'RE 'Ve capitals are not contractions to GPT-2",
    b"Numbers: 12345 3.14159 1,000,000 and 2026-12-04; x2 y22",
    "Le café est très bon: naïve résumé, crème brûlée, Müller, Straße.".encode(),
    "日本語のテキストです。中文文本。한국어 텍스트".encode(),
    "Emoji 👍🏽 🎉 ❤️ and a flag 🇫🇷!".encode(),
    b"a  b   c\t\td\n\n\ne   \n  f \r\n",
    b"   leading and trailing   ",
    "no\u00a0break and ideographic\u3000space".encode(),
    b"the end of a text<|endoftext|>is ordinary characters",
    b"invalid \xff\xfe bytes \x80 here",
    b"a truncated \xe4\xb8 character, then \xe4\xb8\xad whole",
    b"overlong \xc0\xaf, surrogate \xed\xa0\x80, beyond \xf4\x90\x80\x80, \xf5",
    b"\xe4\xb8",
    b"ends in the middle \xf0\x9f\x91",
    b"x" * 1500 + b" after a long word",
    b" " * 1100 + b"x",
    "é".encode() * 700,
    b"",
    b"\n",
]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__),
                                                             "..", "fixtures")
    merges = learn(TRAIN_TEXT, N_MERGES)
    vocab = {}
    for b in range(256):
        vocab[BYTE_ENCODER[b]] = len(vocab)
    # GPT-2's own vocabulary lists the bytes in bytes_to_unicode order; any order is
    # valid: the loader must not assume one
    for a, b in merges:
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
    vocab[EOD] = len(vocab)
    ranks = {m: i for i, m in enumerate(merges)}

    with open(os.path.join(out, "gpt2_vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(out, "gpt2_merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")
    tj = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": vocab[EOD], "content": EOD, "single_word": False,
                          "lstrip": False, "rstrip": False, "normalized": True,
                          "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False,
                          "trim_offsets": True, "use_regex": True},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True,
                           "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "",
                  "fuse_unk": False, "byte_fallback": False, "vocab": vocab,
                  "merges": [f"{a} {b}" for a, b in merges]},
    }
    with open(os.path.join(out, "gpt2_tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False, indent=1)
    with open(os.path.join(out, "gpt2bpe_fixture.txt"), "w") as f:
        f.write(f"# tests/ref/gpt2bpe_reference.py: {len(vocab)} ids, {len(merges)} merges, "
                f"eod {vocab[EOD]}\n")
        f.write(f"vocab {len(vocab)} eod {vocab[EOD]}\n")
        for text in CASES:
            ids = encode(text, vocab, ranks)
            # the reference decodes back to the text (losslessness of the rules)
            inv = {v: k for k, v in vocab.items()}
            dec = {c: b for b, c in BYTE_ENCODER.items()}
            assert bytes(dec[c] for i in ids for c in inv[i]) == text
            f.write("text " + (text.hex() if text else "-") + "\n")
            f.write("ids " + (" ".join(map(str, ids)) if ids else "-") + "\n")


if __name__ == "__main__":
    main()
