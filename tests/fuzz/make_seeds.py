#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/ (valid inputs and a few edge cases).

Usage: python3 tests/fuzz/make_seeds.py   (rewrites tests/fuzz/corpus/{config,shard,ckpt_meta}/)
Regression seeds of bugs the fuzzers found are files named regress-*; this script
leaves them alone. Input formats: the comment at the top of each fuzz_<t>.c.
"""
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# ---- config: first line = argv (@CONFIG = the file), rest = the config file ----
KJV = open(os.path.join(HERE, "..", "..", "jobs", "configs", "kjv-small.cfg")).read()
write("config", "kjv-small", "--data-path train.bin --config @CONFIG\n" + KJV)
write("config", "flags-only",
      "--data-path a.bin b.bin --valid-data-path v.bin --num-layers 2 --hidden-size 64 "
      "--num-heads 4 --seq-length 32 --chunk-size 8 --micro-batch-size 4 "
      "--global-batch-size 8 --train-iters 20 --lr 3e-3 --lr-warmup-iters 5 --seed 1234\n")
write("config", "equals-and-dashes",
      "--config @CONFIG --num-layers 3\n"
      "# comment line\n--data-path = x.bin  # trailing comment\nnum-layers = 6\n"
      "tensor-model-parallel-size 2\npipeline-model-parallel-size 2\n"
      "lr-decay-style constant\nsave ckpt\nsave-interval 5\nload ckpt\n"
      "keep-last 2\nckpt-compression-level 0\nexit-duration-in-mins 0.5\n\r\n")
write("config", "bad-values",
      "--data-path a --config @CONFIG\nnum-heads 5\nlr nan\nseed -1\n"
      "hidden-size 99999999999999999999\nlr-decay-style sideways\nunknown-key 1\n")
write("config", "long-line",
      "--config @CONFIG\ndata-path " + "p" * 1500 + "\nmetrics " + "m" * 5000 + "\n")
write("config", "virtual-stages",
      "--data-path a.bin --num-layers 8 --pipeline-model-parallel-size 2 "
      "--num-layers-per-virtual-pipeline-stage 2 --micro-batch-size 1 --global-batch-size 4\n")
write("config", "help", "--help\n")
write("config", "prep-split",
      "@prep --output-prefix out/kjv --split train:90,test:5,valid:5 --tokenizer bpe "
      "--vocab-size 1024 kjv.txt more/ --force\n")
write("config", "prep-config",
      "@prep --config @CONFIG a.txt b.txt.gz -\n"
      "output-prefix = p\nsplit 949,50,1\ntokenizer-from ck\n")
write("config", "empty", "")

# ---- shard: the file (data/shard.h) ----


def shard(tokens, vocab=256, tok_id=b"bytes-v1", source=None, version=1, hsize=128,
          bpt=2, n=None, merges=b""):
    payload = struct.pack("<%dH" % len(tokens), *tokens)
    h = bytearray(128)
    h[0:8] = b"RNSHARD\0"
    struct.pack_into("<II", h, 8, version, hsize)
    h[16:16 + len(tok_id)] = tok_id
    struct.pack_into("<IIQQQ", h, 48, vocab, bpt, len(tokens) if n is None else n,
                     len(tokens) if source is None else source, zlib.crc32(payload))
    if merges:
        struct.pack_into("<II", h, 80, len(merges) // 4, zlib.crc32(merges))
    struct.pack_into("<I", h, 124, zlib.crc32(bytes(h[:124])))
    return bytes(h) + merges + payload


def bpe_shard(pairs, tokens, **kw):
    """A version 2 shard: the merge table and the id data/tokenizer.c gives it."""
    merges = b"".join(struct.pack("<HH", a, b) for a, b in pairs)
    h = 0xcbf29ce484222325
    for byte in merges:
        h = ((h ^ byte) * 0x100000001b3) & (2**64 - 1)
    vocab = 256 + len(pairs)
    args = dict(vocab=vocab, tok_id=b"bpe-v1-%d-%016x" % (vocab, h), version=2,
                hsize=128 + len(merges), merges=merges)
    args.update(kw)
    return shard(tokens, **args)


text = b"In the beginning God created the heaven and the earth.\n"
write("shard", "valid-text", shard(list(text)))
write("shard", "valid-one-token", shard([65]))
write("shard", "valid-empty", shard([]))
write("shard", "valid-vocab-65536", shard([0, 65535, 1234], vocab=65536, tok_id=b"big-v1"))
write("shard", "token-out-of-vocab", shard([1, 2, 300]))
write("shard", "bad-version", shard(list(b"abc"), version=3))
write("shard", "valid-bpe", bpe_shard([(116, 104), (256, 101), (32, 257)], [258, 32, 257, 256, 33]))
write("shard", "bpe-undefined-id", bpe_shard([(116, 104), (259, 101)], [1, 2]))
write("shard", "bpe-long-token", bpe_shard([(97, 97)] + [(256 + i, 256 + i) for i in range(6)], [262]))
write("shard", "bpe-zero-merges", shard(list(b"abc"), version=2))
write("shard", "bad-bytes-per-token", shard(list(b"abcd"), bpt=4))
write("shard", "count-overflow", shard(list(b"ab"), n=(1 << 63) + 1))
write("shard", "truncated-header", shard(list(b"abc"))[:70])
write("shard", "trailing-bytes", shard(list(b"abc")) + b"\0")
long_id = shard([1, 2, 3], tok_id=b"x" * 32)
write("shard", "id-unterminated", long_id)

# ---- ckpt_meta: a program that builds the HDF5 file (fuzz_ckpt_meta.c) ----
VALID = """format str 0 retnet-ckpt
format_version i64 0 1
iteration i64 0 1
world_size i64 0 2
compression_level i64 0 1
config/vocab_size i64 0 256
config/hidden_size i64 0 64
config/num_layers i64 0 2
config/num_heads i64 0 4
config/ffn_hidden_size i64 0 128
config/chunk_size i64 0 8
config/seq_length i64 0 32
config/seed i64 0 1234
tokenizer/id str 0 bytes-v1
tokenizer/vocab_size i64 0 256
layout/tensor_model_parallel_size i64 0 1
layout/pipeline_model_parallel_size i64 0 1
layout/data_parallel_size i64 0 2
optimizer/step i64 0 1
data/epoch i64 0 0
data/position i64 0 8
data/n_windows i64 0 1000
data/seq_length i64 0 32
data/seed i64 0 1234
model/embedding dset 4
@latest 1
"""
write("ckpt_meta", "valid", VALID)


def edit(key, line):
    out = []
    for l in VALID.splitlines():
        out.append(line if l.split(" ")[0] == key else l)
        if line is not None and out[-1] is None:
            out.pop()
    return "\n".join(l for l in out if l is not None) + "\n"


write("ckpt_meta", "missing-hidden", edit("config/hidden_size", None))
write("ckpt_meta", "chunk-zero", edit("config/chunk_size", "config/chunk_size i64 0 0"))
write("ckpt_meta", "heads-zero", edit("config/num_heads", "config/num_heads i32 0 0"))
write("ckpt_meta", "vocab-mismatch", edit("tokenizer/vocab_size", "tokenizer/vocab_size u8 0 255"))
write("ckpt_meta", "hidden-float", edit("config/hidden_size", "config/hidden_size f64 0 64.5"))
write("ckpt_meta", "hidden-vector", edit("config/hidden_size", "config/hidden_size i64 4 64 64 64 64"))
write("ckpt_meta", "format-vlen", edit("format", "format vstr 0 retnet-ckpt"))
write("ckpt_meta", "format-padded", edit("format", "format strp 0 retnet-ckpt"))
write("ckpt_meta", "id-null-space", edit("tokenizer/id", "tokenizer/id str -1 bytes-v1"))
write("ckpt_meta", "config-is-dataset", edit("config/vocab_size", "config dset 3") )
write("ckpt_meta", "latest-bad", edit("@latest", "@latest 12x"))
write("ckpt_meta", "negative-step", edit("optimizer/step", "optimizer/step i64 0 -5"))
write("ckpt_meta", "huge-seq", edit("config/seq_length", "config/seq_length u64 0 18446744073709551615"))
write("ckpt_meta", "empty", "")


def bpe_id(pairs):
    h = 0xcbf29ce484222325
    for a, b in pairs:
        for byte in struct.pack("<HH", a, b):
            h = ((h ^ byte) * 0x100000001b3) & (2**64 - 1)
    return "bpe-v1-%d-%016x" % (256 + len(pairs), h)


# A BPE checkpoint with its merge table (4 merges, vocab 260), and its damages.
PAIRS = [(116, 104), (32, 256), (101, 32), (257, 101)]
VALUES = " ".join("%d %d" % p for p in PAIRS)


def bpe(id_=None, count="4", table="tokenizer/merges m16 4 " + VALUES, vocab="260"):
    text = VALID.replace("config/vocab_size i64 0 256", "config/vocab_size i64 0 " + vocab)
    text = text.replace("tokenizer/id str 0 bytes-v1", "tokenizer/id str 0 " + (id_ or bpe_id(PAIRS)))
    text = text.replace("tokenizer/vocab_size i64 0 256", "tokenizer/vocab_size i64 0 " + vocab)
    if count is not None:
        text += "tokenizer/n_merges i64 0 " + count + "\n"
    if table is not None:
        text += table + "\n"
    return text


write("ckpt_meta", "valid-bpe", bpe())
write("ckpt_meta", "bpe-old", bpe(count=None, table=None))
write("ckpt_meta", "bpe-hash-mismatch", bpe(id_="bpe-v1-260-0123456789abcdef"))
write("ckpt_meta", "bpe-undefined-id", bpe(table="tokenizer/merges m16 4 116 104 32 300 101 32 257 101"))
write("ckpt_meta", "bpe-table-missing", bpe(table=None))
write("ckpt_meta", "bpe-table-float", bpe(table="tokenizer/merges dset 8"))
write("ckpt_meta", "bpe-table-int32", bpe(table="tokenizer/merges m32 4 " + VALUES))
write("ckpt_meta", "bpe-table-short", bpe(table="tokenizer/merges m16 3 " + VALUES))
write("ckpt_meta", "bpe-count-huge", bpe(count="99999999999"))
write("ckpt_meta", "bytes-with-table", VALID + "tokenizer/n_merges i64 0 4\ntokenizer/merges m16 4 " + VALUES + "\n")
