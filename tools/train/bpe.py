#!/usr/bin/python3
"""Byte-level BPE trainer + encoder/decoder compatible with DeepSeek-V3's tokenizer.json layout.

Pre-tokenization = DeepSeek-V3's Sequence of three Split(Isolated) regexes, then GPT-2 ByteLevel
(bytes -> printable unicode chars).  Vocab: id 0 = <｜begin▁of▁sentence｜>, id 1 = <｜end▁of▁sentence｜>,
ids 2..257 = the 256 byte symbols (in bytes_to_unicode order), then one id per merge.

  /usr/bin/python3 tools/train/bpe.py --corpus /work/shared/data/austen.txt --holdout 0.05 --out tools/train/runs/data \
        --vocab 4096 --ref-config tests/data/deepseek-v3-tokenizer/tokenizer_config.json
--corpus: split off the last 5% of bytes (cut at the line boundary before 95%) -> OUT/train.txt, OUT/val.txt,
train BPE on train.txt, check decode(encode(val)) == val. Or --text FILE [--check FILE] to skip the split.
"""
import argparse, collections, heapq, json, time
import regex

BOS, EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"
SPLIT_PATTERNS = [  # DeepSeek-V3 tokenizer.json pre_tokenizer, unchanged
    "\\p{N}{1,3}",
    "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
]
_RES = [regex.compile(p) for p in SPLIT_PATTERNS]


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}  # insertion order = GPT-2 order


B2U = bytes_to_unicode()
U2B = {u: b for b, u in B2U.items()}


def pretokenize(text):
    """Split(Isolated) x3: matches and the gaps between them both become pieces."""
    pieces = [text]
    for rx in _RES:
        out = []
        for p in pieces:
            pos = 0
            for m in rx.finditer(p):
                if m.start() > pos: out.append(p[pos:m.start()])
                if m.end() > m.start(): out.append(m.group())
                pos = m.end()
            if pos < len(p): out.append(p[pos:])
        pieces = out
    return ["".join(B2U[b] for b in p.encode("utf-8")) for p in pieces]


def train(text, vocab_size):
    t0 = time.time()
    wc = collections.Counter(pretokenize(text))
    words = [list(w) for w in wc]
    counts = [wc[w] for w in wc]
    pair_cnt = collections.defaultdict(int)
    where = collections.defaultdict(set)  # pair -> word indices containing it
    for i, w in enumerate(words):
        for a, b in zip(w, w[1:]):
            pair_cnt[(a, b)] += counts[i]; where[(a, b)].add(i)
    heap = [(-c, p) for p, c in pair_cnt.items()]
    heapq.heapify(heap)
    merges = []
    n_merges = vocab_size - 2 - 256
    while len(merges) < n_merges and heap:
        nc, pair = heapq.heappop(heap)
        if pair_cnt.get(pair, 0) != -nc or nc == 0:
            continue  # stale entry
        merges.append(pair)
        a, b = pair; ab = a + b
        changed = set()
        for i in list(where[pair]):
            w, c = words[i], counts[i]
            for x, y in zip(w, w[1:]):  # remove old pairs of this word
                pair_cnt[(x, y)] -= c; changed.add((x, y))
            j, nw = 0, []
            while j < len(w):
                if j + 1 < len(w) and w[j] == a and w[j + 1] == b:
                    nw.append(ab); j += 2
                else:
                    nw.append(w[j]); j += 1
            words[i] = nw
            for x, y in zip(nw, nw[1:]):
                pair_cnt[(x, y)] += c; where[(x, y)].add(i); changed.add((x, y))
        del pair_cnt[pair], where[pair]
        for p in changed:
            if p in pair_cnt and pair_cnt[p] > 0:
                heapq.heappush(heap, (-pair_cnt[p], p))
    print(f"bpe: {len(wc)} unique words, {len(merges)} merges in {time.time() - t0:.1f}s")
    return merges


class Tokenizer:
    def __init__(self, merges):
        self.vocab = {BOS: 0, EOS: 1}
        for u in B2U.values(): self.vocab[u] = len(self.vocab)
        for a, b in merges: self.vocab[a + b] = len(self.vocab)
        self.inv = {i: s for s, i in self.vocab.items()}
        self.ranks = {tuple(m): r for r, m in enumerate(merges)}
        self.merges = merges
        self.cache = {}

    @classmethod
    def load(cls, path):
        tj = json.load(open(path, encoding="utf-8"))
        return cls([tuple(m.split(" ")) for m in tj["model"]["merges"]])

    def _bpe(self, w):
        if w in self.cache: return self.cache[w]
        parts = list(w)
        while len(parts) > 1:
            best = min(((self.ranks.get((x, y), 1 << 30), k) for k, (x, y) in enumerate(zip(parts, parts[1:]))))
            if best[0] == 1 << 30: break
            k = best[1]; parts[k:k + 2] = [parts[k] + parts[k + 1]]
        ids = [self.vocab[p] for p in parts]
        self.cache[w] = ids
        return ids

    def encode(self, text, bos=False):
        ids = [0] if bos else []
        for w in pretokenize(text): ids.extend(self._bpe(w))
        return ids

    def decode(self, ids):
        s = "".join(self.inv[i] for i in ids if i > 1)
        return bytes(U2B[ch] for ch in s).decode("utf-8", errors="replace")

    def save(self, out_dir, ref_config=None, max_len=256):
        def added(i, s):
            return {"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
        tj = {"version": "1.0", "truncation": None, "padding": None,
              "added_tokens": [added(0, BOS), added(1, EOS)],
              "normalizer": {"type": "Sequence", "normalizers": []},
              "pre_tokenizer": {"type": "Sequence", "pretokenizers":
                                [{"type": "Split", "pattern": {"Regex": p}, "behavior": "Isolated", "invert": False} for p in SPLIT_PATTERNS]
                                + [{"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
              "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
              "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
              "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                        "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                        "vocab": self.vocab, "merges": [a + " " + b for a, b in self.merges]}}
        with open(f"{out_dir}/tokenizer.json", "w", encoding="utf-8") as f:
            json.dump(tj, f, ensure_ascii=False, indent=1)
        tok = lambda s: {"__type": "AddedToken", "content": s, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}
        cfg = {"add_bos_token": True, "add_eos_token": False, "bos_token": tok(BOS), "eos_token": tok(EOS),
               "clean_up_tokenization_spaces": False, "legacy": True, "model_max_length": max_len,
               "pad_token": tok(EOS), "sp_model_kwargs": {}, "unk_token": None, "tokenizer_class": "LlamaTokenizerFast"}
        if ref_config:
            cfg["chat_template"] = json.load(open(ref_config, encoding="utf-8"))["chat_template"]
        with open(f"{out_dir}/tokenizer_config.json", "w", encoding="utf-8") as f:
            json.dump(cfg, f, ensure_ascii=False, indent=2)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=None); ap.add_argument("--holdout", type=float, default=0.05)
    ap.add_argument("--text", default=None)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--out", required=True)
    ap.add_argument("--ref-config", default=None)
    ap.add_argument("--max-len", type=int, default=256)
    ap.add_argument("--check", default=None, help="text file for the round-trip check")
    a = ap.parse_args()
    if a.corpus:
        d = open(a.corpus, "rb").read()
        cut = d.rfind(b"\n", 0, int(len(d) * (1 - a.holdout))) + 1
        open(f"{a.out}/train.txt", "wb").write(d[:cut]); open(f"{a.out}/val.txt", "wb").write(d[cut:])
        print(f"split {a.corpus}: train {cut} bytes, val {len(d) - cut} bytes")
        a.text, a.check = f"{a.out}/train.txt", f"{a.out}/val.txt"
    tok = Tokenizer(train(open(a.text, encoding="utf-8").read(), a.vocab))
    tok.save(a.out, a.ref_config, a.max_len)
    if a.check:
        t = open(a.check, encoding="utf-8").read()
        ids = tok.encode(t)
        assert tok.decode(ids) == t, "round-trip FAILED"
        print(f"round-trip OK on {a.check}: {len(t)} chars -> {len(ids)} tokens ({len(t) / len(ids):.2f} chars/token)")
