#!/usr/bin/python3
"""Build the demo model's training corpus from public-domain books in Debian.

What it is for: step 1 of tools/demo/retrain.sh. It reads
  - Jane Austen's six novels (r-cran-janeaustenr, R lazy-load data),
  - Moby Dick (r-cran-tokenizers, data set `mobydick`, Gutenberg #2701),
  - the King James Bible (bible-kjv-text, dumped with `bible` of bible-kjv),
cleans them into plain prose and cuts them into passages: consecutive
paragraphs of one chapter, packed greedily up to PASSAGE_CHARS characters
(a longer paragraph is a passage of its own). Paragraphs inside a passage
are separated by "\\n\\n". Each passage becomes one training document; the
tokenizer step wraps it as <s> text </s>, so the model learns to stop.

Invariants (what makes the output reproducible):
  - the packages are fetched with `apt-get download` into the cache and
    unpacked with `dpkg-deb -x` (no root, no R needed) unless they are
    already installed system-wide; their versions are recorded;
  - books are processed in a fixed order and every VALID_EVERY-th passage
    (global index % VALID_EVERY == VALID_PHASE) is the validation split;
  - no randomness anywhere; outputs are byte-identical for the same
    package versions. sha256 of both splits is written to corpus.json.

Outputs (in --out, default .cache/demo/corpus): train.jsonl and
valid.jsonl (one {"src": ..., "text": ...} per line) and corpus.json
(sizes, hashes, package versions). Single-threaded; runs in seconds.
"""

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rdata  # noqa: E402

PASSAGE_CHARS = 1000
VALID_EVERY = 20
VALID_PHASE = 10

PACKAGES = ["r-cran-janeaustenr", "r-cran-tokenizers", "bible-kjv",
            "bible-kjv-text"]
AUSTEN_ORDER = ["sensesensibility", "prideprejudice", "mansfieldpark",
                "emma", "northangerabbey", "persuasion"]
AUSTEN_NAMES = {
    "sensesensibility": "Sense and Sensibility (1811)",
    "prideprejudice": "Pride and Prejudice (1813)",
    "mansfieldpark": "Mansfield Park (1814)",
    "emma": "Emma (1815)",
    "northangerabbey": "Northanger Abbey (1817)",
    "persuasion": "Persuasion (1817)",
}
PARA_SEP = "\n\n"


# ---------------------------------------------------------------- packages

def _installed_root(pkg):
    out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg],
                         capture_output=True, text=True)
    return out.returncode == 0 and "install ok installed" in out.stdout


def fetch_packages(cache):
    """Return {pkg: (root_dir, version)}; downloads and unpacks if needed."""
    debs = os.path.join(cache, "debs")
    os.makedirs(debs, exist_ok=True)
    roots = {}
    for pkg in PACKAGES:
        if _installed_root(pkg):
            ver = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg],
                                 capture_output=True, text=True).stdout
            roots[pkg] = ("/", ver)
            continue
        found = [f for f in sorted(os.listdir(debs))
                 if f.startswith(pkg + "_") and f.endswith(".deb")]
        if not found:
            subprocess.run(["apt-get", "download", "-q",
                            "-o", "APT::Sandbox::User=root", pkg], cwd=debs,
                           check=True, stdout=subprocess.DEVNULL)
            found = [f for f in sorted(os.listdir(debs))
                     if f.startswith(pkg + "_") and f.endswith(".deb")]
        if not found:
            sys.exit("corpus: could not download %s" % pkg)
        deb = os.path.join(debs, found[-1])
        root = os.path.join(debs, "root-" + pkg)
        if not os.path.isdir(root):
            subprocess.run(["dpkg-deb", "-x", deb, root + ".tmp"], check=True)
            os.rename(root + ".tmp", root)
        ver = subprocess.run(["dpkg-deb", "-f", deb, "Version"],
                             capture_output=True, text=True,
                             check=True).stdout.strip()
        roots[pkg] = (root, ver)
    return roots


def _rlib(root, pkg_dir):
    return os.path.join(root, "usr/lib/R/site-library", pkg_dir,
                        "data/Rdata")


# ---------------------------------------------------------------- cleaning

def _clean_paragraph(lines):
    text = " ".join(line.strip() for line in lines)
    text = text.replace("_", "").replace("*", "")
    text = text.replace("[", "").replace("]", "")
    return re.sub(r"\s+", " ", text).strip()


def _paragraphs(lines):
    """Group lines into paragraphs at blank lines; return lists of lines."""
    paras, cur = [], []
    for line in lines:
        if line.strip():
            cur.append(line)
        elif cur:
            paras.append(cur)
            cur = []
    if cur:
        paras.append(cur)
    return paras


AUSTEN_CHAPTER = re.compile(r"^\s*(CHAPTER|Chapter)\s+[IVXLC0-9]+\.?\s*$")
AUSTEN_END = re.compile(r"^\s*(THE END|FINIS|Finis|\*Vide|A NOTE ON THE TEXT)")


def austen_chapters(lines):
    """Split one novel (list of lines) into chapters of clean paragraphs."""
    chapters, cur, started = [], None, False
    for para in _paragraphs(lines):
        first = para[0]
        if AUSTEN_END.match(first) and started:
            break
        if len(para) == 1 and AUSTEN_CHAPTER.match(first):
            started = True
            cur = []
            chapters.append(cur)
            continue
        if not started or re.match(r"^\s*VOLUME\s+[IVX]+\s*$", first):
            continue
        if first.strip().startswith("[") and "edition" in " ".join(para):
            continue
        text = _clean_paragraph(para)
        if text:
            cur.append(text)
    return [c for c in chapters if c]


MOBY_CHAPTER = re.compile(r"^(CHAPTER \d+\. |Epilogue$)")


def moby_chapters(text):
    """Split Moby Dick into chapters, without the Gutenberg header/footer."""
    text = text.replace("\ufeff", "").replace("\r", "")
    start = text.index("CHAPTER 1. Loomings.")
    end = text.index("End of Project Gutenberg's Moby Dick")
    chapters, cur = [], None
    for para in _paragraphs(text[start:end].split("\n")):
        if MOBY_CHAPTER.match(para[0]) and len(" ".join(para)) < 150:
            cur = []
            chapters.append(cur)
            continue
        cleaned = _clean_paragraph(para)
        if cleaned:
            cur.append(cleaned)
    return [c for c in chapters if c]


KJV_VERSE = re.compile(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$")


def kjv_chapters(dump):
    """Split the `bible -f` dump (one 'Ge1:1 text' line per verse)."""
    chapters, key = [], None
    for line in dump.splitlines():
        m = KJV_VERSE.match(line)
        if not m:
            sys.exit("corpus: unexpected bible line %r" % line[:80])
        book, chap, _, verse = m.groups()
        if (book, chap) != key:
            key = (book, chap)
            chapters.append([])
        chapters[-1].append(re.sub(r"\s+", " ", verse).strip())
    return chapters


def dump_bible(exe_root, data_root):
    exe = os.path.join(exe_root, "usr/bin/bible")
    data_dir = os.path.join(data_root, "usr/lib")
    out = subprocess.run([exe, "-f", "-p", data_dir, "Gen1:1-Rev22:21"],
                         capture_output=True, check=True,
                         stdin=subprocess.DEVNULL)
    return out.stdout.decode("ascii")


# ---------------------------------------------------------------- passages

def pack(units, sep):
    """Greedily pack text units (paragraphs or verses) into passages."""
    out, cur, size = [], [], 0
    for unit in units:
        add = len(unit) + (len(sep) if cur else 0)
        if cur and size + add > PASSAGE_CHARS:
            out.append(sep.join(cur))
            cur, size = [], 0
            add = len(unit)
        cur.append(unit)
        size += add
    if cur:
        out.append(sep.join(cur))
    return out


def build(roots):
    """Return the ordered list of (src, passage)."""
    docs = []
    jroot = roots["r-cran-janeaustenr"][0]
    austen = rdata.read_lazyload(_rlib(jroot, "janeaustenr"))
    for name in AUSTEN_ORDER:
        for chapter in austen_chapters(austen[name]):
            docs += [("austen/" + name, p) for p in pack(chapter, PARA_SEP)]
    troot = roots["r-cran-tokenizers"][0]
    moby = rdata.read_lazyload(_rlib(troot, "tokenizers"))["mobydick"][0]
    for chapter in moby_chapters(moby):
        docs += [("melville/mobydick", p) for p in pack(chapter, PARA_SEP)]
    dump = dump_bible(roots["bible-kjv"][0], roots["bible-kjv-text"][0])
    for chapter in kjv_chapters(dump):
        docs += [("kjv", p) for p in pack(chapter, " ")]
    return docs


def check(docs):
    """Fail loudly on leftovers of markup or on the reserved separator."""
    for src, text in docs:
        if "\u2029" in text or "\r" in text or "\t" in text:
            sys.exit("corpus: reserved character in %s" % src)
        if re.search(r"Gutenberg|^CHAPTER|[_*\[\]]", text):
            sys.exit("corpus: markup left in %s: %r" % (src, text[:80]))


def write(out_dir, docs, versions):
    os.makedirs(out_dir, exist_ok=True)
    splits = {"train": [], "valid": []}
    for i, (src, text) in enumerate(docs):
        name = "valid" if i % VALID_EVERY == VALID_PHASE else "train"
        splits[name].append({"src": src, "text": text})
    stats = {"passage_chars": PASSAGE_CHARS, "valid_every": VALID_EVERY,
             "valid_phase": VALID_PHASE, "packages": versions, "splits": {}}
    for name, items in splits.items():
        body = "".join(json.dumps(d, ensure_ascii=False) + "\n"
                       for d in items)
        path = os.path.join(out_dir, name + ".jsonl")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.write(body)
        os.replace(path + ".tmp", path)
        by_src = {}
        for d in items:
            by_src[d["src"]] = by_src.get(d["src"], 0) + len(d["text"])
        stats["splits"][name] = {
            "documents": len(items),
            "chars": sum(len(d["text"]) for d in items),
            "chars_by_source": by_src,
            "sha256": hashlib.sha256(body.encode("utf-8")).hexdigest(),
        }
    with open(os.path.join(out_dir, "corpus.json"), "w") as f:
        json.dump(stats, f, indent=1, sort_keys=True)
        f.write("\n")
    return stats


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(os.path.dirname(here))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", default=os.path.join(repo, ".cache/demo"))
    ap.add_argument("--out", default=None,
                    help="output dir (default CACHE/corpus)")
    args = ap.parse_args()
    out = args.out or os.path.join(args.cache, "corpus")
    roots = fetch_packages(args.cache)
    docs = build(roots)
    check(docs)
    stats = write(out, docs, {p: v for p, (_, v) in roots.items()})
    for name, s in stats["splits"].items():
        print("corpus: %-5s %6d documents %9d chars  %s" %
              (name, s["documents"], s["chars"], s["sha256"][:16]))


if __name__ == "__main__":
    main()
