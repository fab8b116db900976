"""Generate ``tests/data/malformed/``: broken FASTA/FAI/VCF/BCF/BED/config/checkpoint inputs plus ``cases.json``.

Every input is written by this script (deterministic: fixed seeds, fixed gzip mtimes), never hand-edited.
``cases.json`` lists, per case, the command lines to run (``genomod ...`` or ``make_shards ...``) with
placeholders the test fills in, and what each must do: ``exit`` 2 with a one-line error containing the
listed substrings, or exit 0 with every input record kept (``records``) and the skip reasons reported.

    python scripts/make_malformed_corpus.py            # (re)write tests/data/malformed
    python scripts/make_malformed_corpus.py --check    # exit 1 when the committed corpus is stale
"""

from __future__ import annotations

import argparse
import filecmp
import gzip
import io
import json
import random
import shutil
import struct
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "tests" / "data" / "malformed"

# placeholders filled in by tests/test_robustness_malformed.py
#   {dir}    the copied corpus folder      {out}   an output file path (must not exist afterwards on error)
#   (a later --model, --out or -o replaces an earlier one: click keeps the last)
#   {outdir} an output folder path          {model} a tiny valid checkpoint    {shards} a valid shard folder
#   {hg38}   genomod's shipped hg38 chr17 reference
SCORE = ["genomod", "score", "--model", "{model}", "--mode", "fast", "--window", "64", "--device", "cpu",
         "-o", "{out}"]
SHARDS = ["make_shards", "--out", "{outdir}", "--window", "64", "--no-progress"]
MUTAGENESIS = ["genomod", "mutagenesis", "--model", "{model}", "--window", "64", "--device", "cpu",
               "--region", "chr1:101-110", "-o", "{out}"]
EVAL = ["genomod", "eval", "brca1", "--mode", "fast", "--device", "cpu", "--out", "{outdir}"]
TRAIN = ["genomod", "train", "--set", "data.shards={shards}", "--set", "data.window=64", "--set", "train.max_steps=5",
         "--check"]

HEADER = (
    "##fileformat=VCFv4.2\n"
    "##contig=<ID=chr1,length={n1}>\n"
    "##contig=<ID=chr2,length={n2}>\n"
    '##INFO=<ID=DP,Number=1,Type=Integer,Description="Depth">\n'
    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
)


def _seq(n: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice("ACGT") for _ in range(n))


def _fasta(records: list[tuple[str, str]], width: int = 60, eol: str = "\n") -> str:
    out = []
    for name, seq in records:
        out.append(f">{name}{eol}")
        out.extend(seq[i : i + width] + eol for i in range(0, len(seq), width))
    return "".join(out)


def _gzip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as fh:
        fh.write(data)
    return buf.getvalue()


def _bgzip(data: bytes, path: Path) -> None:
    import pysam

    with pysam.BGZFile(str(path), "wb") as fh:
        fh.write(data)


class Corpus:
    """Collects files and cases; writes cases.json at the end."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.cases: list[dict] = []
        self.chr1 = _seq(1200, 1)
        self.chr2 = _seq(700, 2)
        self.header = HEADER.format(n1=len(self.chr1), n2=len(self.chr2))

    def write(self, name: str, data: str | bytes) -> str:
        path = self.out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            path.write_bytes(data.encode())
        else:
            path.write_bytes(data)
        return name

    def case(self, cid: str, kind: str, about: str, runs: list[dict]) -> None:
        self.cases.append({"id": cid, "kind": kind, "about": about, "runs": runs})

    # ---- shared valid inputs --------------------------------------------------------------------------
    def good_inputs(self) -> None:
        self.write("good/ref.fa", _fasta([("chr1", self.chr1), ("chr2", self.chr2)]))
        rows = [self.row("chr1", p) for p in (100, 250, 400, 600, 800)] + [self.row("chr2", 300)]
        self.write("good/in.vcf", self.header + "".join(rows))
        self.write("good/regions.bed", "chr1\t0\t1000\n")

    def row(self, chrom: str, pos: int, ref: str | None = None, alt: str | None = None, info: str = ".") -> str:
        seq = self.chr1 if chrom == "chr1" else self.chr2
        ref = ref if ref is not None else seq[pos - 1]
        alt = alt if alt is not None else ("A" if ref.upper() != "A" else "C")
        return f"{chrom}\t{pos}\t.\t{ref}\t{alt}\t.\tPASS\t{info}\n"


def error(args: list[str], *contains: str) -> dict:
    return {"args": args, "exit": 2, "contains": list(contains)}


def ok(args: list[str], records: int, *contains: str) -> dict:
    """Exit 0, output written with ``records`` records, stderr containing ``contains`` (skip reasons)."""
    return {"args": args, "exit": 0, "records": records, "contains": list(contains)}


def fasta_cases(c: Corpus) -> None:
    good = _fasta([("chr1", c.chr1), ("chr2", c.chr2)])

    def runs(name: str, *contains: str) -> list[dict]:
        f = "{dir}/" + name
        return [
            error(SCORE + ["-i", "{dir}/good/in.vcf", "-r", f], name, *contains),
            error(SHARDS + ["--fasta", f], name, *contains),
            error(MUTAGENESIS + ["-r", f], name, *contains),
        ]

    c.case("fasta_empty", "fasta", "empty file", runs(c.write("fasta/empty.fa", b""), "empty"))
    garbage = bytes(random.Random(3).randrange(256) for _ in range(4096))
    c.case("fasta_binary", "fasta", "binary garbage",
           runs(c.write("fasta/binary.fa", b"\x00\x01" + garbage), "not a FASTA file"))
    gz = _gzip(good.encode())
    c.case("fasta_truncated_gzip", "fasta", "plain gzip cut in the middle",
           runs(c.write("fasta/truncated.fa.gz", gz[: len(gz) // 2]), "truncated"))
    with tempfile.TemporaryDirectory() as tmp:
        _bgzip(good.encode(), Path(tmp) / "x.gz")
        bgz = (Path(tmp) / "x.gz").read_bytes()
    c.case("fasta_truncated_bgzip", "fasta", "bgzip cut in the middle (no EOF block)",
           runs(c.write("fasta/truncated.fa.bgz", bgz[: len(bgz) // 2]), "truncated"))
    c.case("fasta_duplicate_contig", "fasta", "two records named chr1",
           runs(c.write("fasta/duplicate.fa", _fasta([("chr1", c.chr1), ("chr1", c.chr2)])),
                "duplicate contig name 'chr1'"))
    lines = good.split("\n")
    lines[5] = lines[5][:10] + "12" + lines[5][12:]
    c.case("fasta_digits", "fasta", "digits inside a sequence line",
           runs(c.write("fasta/digits.fa", "\n".join(lines)), "line 6", "invalid character '1'"))
    lines = good.split("\n")
    lines[3] = lines[3][:30] + " " + lines[3][31:]
    c.case("fasta_space", "fasta", "a space inside a sequence line",
           runs(c.write("fasta/space.fa", "\n".join(lines)), "line 4", "invalid character ' '"))
    lines = good.split("\n")
    lines[2] = lines[2][:40]
    c.case("fasta_ragged_lines", "fasta", "one sequence line shorter than the others",
           runs(c.write("fasta/ragged.fa", "\n".join(lines)), "line 4"))
    lines = good.split("\n")
    lines.insert(4, "")
    c.case("fasta_blank_line", "fasta", "blank line inside a sequence",
           runs(c.write("fasta/blank_line.fa", "\n".join(lines)), "line 6"))
    c.case("fasta_no_header", "fasta", "sequence lines before any '>' header",
           runs(c.write("fasta/no_header.fa", good.split("\n", 1)[1]), "does not start with '>'"))
    c.case("fasta_empty_name", "fasta", "a '>' line without a name",
           runs(c.write("fasta/empty_name.fa", ">\n" + c.chr1 + "\n"), "line 1", "empty contig name"))
    c.case("fasta_header_only", "fasta", "a header with no sequence at all",
           runs(c.write("fasta/header_only.fa", ">chr1\n"), "line 2"))
    name = c.write("fasta/no_final_newline.fa", _fasta([("chr1", c.chr1), ("chr2", c.chr2)]).rstrip("\n"))
    c.case("fasta_no_final_newline", "fasta", "last line without a newline (hung a validator once: fuzz finding)",
           [ok(SCORE + ["-i", "{dir}/good/in.vcf", "-r", "{dir}/" + name], 6, "6 scored")])
    crlf = _fasta([("chr1", c.chr1), ("chr2", c.chr2)], eol="\r\n")
    name = c.write("fasta/crlf.fa", crlf)
    c.case("fasta_crlf", "fasta", "Windows line endings: read as if they were Unix ones",
           [ok(SCORE + ["-i", "{dir}/good/in.vcf", "-r", "{dir}/" + name], 6, "6 scored")])


def fai_cases(c: Corpus) -> None:
    """Each case is a good FASTA copy with a broken .fai beside it (the test makes the .fai the newer file)."""
    good = _fasta([("chr1", c.chr1), ("chr2", c.chr2)])
    off2 = good.index(">chr2") + len(">chr2\n")

    def case(cid: str, about: str, fai: str, *contains: str) -> None:
        fa = c.write(f"fai/{cid}.fa", good)
        c.write(f"fai/{cid}.fa.fai", fai)
        c.case(cid, "fai", about, [
            error(SCORE + ["-i", "{dir}/good/in.vcf", "-r", "{dir}/" + fa], f"{cid}.fa.fai", *contains),
            error(SHARDS + ["--fasta", "{dir}/" + fa], f"{cid}.fa.fai", *contains),
        ])

    case("fai_garbage", "index is not tab-separated text", "this is not an index\n", "line 1")
    case("fai_non_numeric", "length column is not a number",
         f"chr1\tlots\t6\t60\t61\nchr2\t700\t{off2}\t60\t61\n", "line 1")
    case("fai_beyond_file", "offsets point past the end of the FASTA",
         f"chr1\t1200\t6\t60\t61\nchr2\t700\t{off2 + 100000}\t60\t61\n", "line 2", "beyond the end")
    case("fai_wrong_name", "index names a contig the FASTA does not have at that offset",
         f"chr1\t1200\t6\t60\t61\nchrX\t700\t{off2}\t60\t61\n", "line 2", "chrX")
    case("fai_other_file", "an index of another FASTA (wrong offsets)",
         f"chr1\t1200\t9\t70\t71\nchr2\t700\t{off2 + 3}\t70\t71\n", "line 1")


def vcf_cases(c: Corpus) -> None:
    hdr = c.header
    good_rows = [c.row("chr1", p) for p in (100, 250, 400)]

    def vcf(name: str, body: str | bytes) -> str:
        return c.write(f"vcf/{name}", body if isinstance(body, bytes) else body)

    def score(path: str, *extra: str) -> list[str]:
        return SCORE + ["-i", "{dir}/" + path, "-r", "{dir}/good/ref.fa", *extra]

    def err_case(cid: str, about: str, body: str | bytes, fname: str, *contains: str) -> None:
        p = vcf(fname, body)
        c.case(cid, "vcf", about, [error(score(p), fname, *contains)])

    def skip_case(cid: str, about: str, body: str, fname: str, n: int, reason: str, strict: tuple = ()) -> None:
        p = vcf(fname, body)
        runs = [ok(score(p), n, reason)]
        if strict:
            runs.append(error(score(p, "--strict"), fname, *strict))
        c.case(cid, "vcf", about, runs)

    err_case("vcf_empty", "empty file", b"", "empty.vcf", "empty")
    err_case("vcf_binary", "binary garbage", bytes(random.Random(4).randrange(256) for _ in range(2048)),
             "binary.vcf", "not a VCF")
    with tempfile.TemporaryDirectory() as tmp:
        _bgzip((hdr + "".join(c.row("chr1", p) for p in range(10, 1100, 3))).encode(), Path(tmp) / "x.gz")
        bgz = (Path(tmp) / "x.gz").read_bytes()
    err_case("vcf_truncated_bgzip", "bgzipped VCF cut in the middle", bgz[: len(bgz) // 2],
             "truncated.vcf.gz", "truncated")
    err_case("vcf_no_chrom_header", "no '#CHROM' header line",
             "##fileformat=VCFv4.2\n" + "".join(good_rows), "no_chrom_header.vcf", "#CHROM")
    err_case("vcf_wrong_columns", "a record with 4 columns",
             hdr + good_rows[0] + "chr1\t250\t.\tG\n" + good_rows[2], "wrong_columns.vcf",
             "line 7", "record 2", "4 tab-separated columns")
    err_case("vcf_space_separated", "space-separated columns",
             hdr + good_rows[0].replace("\t", " "), "spaces.vcf", "line 6", "record 1", "tab")
    err_case("vcf_pos_text", "non-numeric POS", hdr + good_rows[0] + "chr1\tabc\t.\tC\tT\t.\tPASS\t.\n",
             "pos_text.vcf", "line 7", "record 2", "POS 'abc'")
    err_case("vcf_pos_negative", "negative POS", hdr + "chr1\t-5\t.\tC\tT\t.\tPASS\t.\n",
             "pos_negative.vcf", "line 6", "record 1", "POS '-5'")
    skip_case("vcf_info_type", "INFO value of the wrong type for its header: genomod reads no INFO, record kept",
              hdr + good_rows[0] + c.row("chr1", 250, info="DP=many"), "info_type.vcf", 2, "2 scored")
    # per-record problems that are skipped with a reason by default, and errors under --strict
    skip_case("vcf_pos_zero", "POS 0", hdr + good_rows[0] + "chr1\t0\t.\tC\tT\t.\tPASS\t.\n",
              "pos_zero.vcf", 2, "is not a valid", strict=("record 2", "POS 0"))
    skip_case("vcf_pos_beyond_contig", "POS after the contig end",
              hdr + good_rows[0] + "chr2\t5000\t.\tC\tT\t.\tPASS\t.\n", "pos_beyond.vcf", 2,
              "beyond the end of", strict=("record 2", "chr2:5000", "beyond the end of chr2"))
    ref_tail = c.chr2[-3:] + "A"
    skip_case("vcf_ref_past_end", "REF running past the contig end",
              hdr + f"chr2\t698\t.\t{ref_tail}\tA\t.\tPASS\t.\n", "ref_past_end.vcf", 1,
              "runs past the end of", strict=("record 1", "chr2:698", "runs past the end"))
    skip_case("vcf_ref_mismatch", "REF differs from the reference",
              hdr + c.row("chr1", 100, ref="ACGT".replace(c.chr1[99], "")[0], alt=c.chr1[99])
              + good_rows[1], "ref_mismatch.vcf", 2, "does not match reference",
              strict=("record 1", "chr1:100", "does not match"))
    skip_case("vcf_contig_not_in_reference", "contig absent from the FASTA (and from the header)",
              hdr + good_rows[0] + "chr7\t10\t.\tA\tG\t.\tPASS\t.\n", "contig_unknown.vcf", 2,
              "not in reference", strict=("record 2", "chr7"))
    skip_case("vcf_iupac_alleles", "IUPAC codes in ALT", hdr + good_rows[0] + c.row("chr1", 250, alt="R"),
              "iupac.vcf", 2, "non-ACGT")
    skip_case("vcf_star_alt", "spanning deletion '*' ALT", hdr + c.row("chr1", 250, alt="*"),
              "star.vcf", 1, "spanning deletion")
    skip_case("vcf_dot_alt", "'.' ALT (no variant)", hdr + c.row("chr1", 250, alt="."), "dot_alt.vcf", 1,
              "no ALT allele")
    skip_case("vcf_symbolic_alt", "symbolic <DEL> ALT", hdr + c.row("chr1", 250, alt="<DEL>"), "symbolic.vcf",
              1, "symbolic")
    # handled on purpose, scored
    lower = hdr + "".join(c.row("chr1", p, ref=c.chr1[p - 1].lower(), alt="t" if c.chr1[p - 1] != "T" else "g")
                          for p in (100, 250))
    skip_case("vcf_lowercase_alleles", "lowercase REF/ALT are upper-cased and scored", lower,
              "lowercase.vcf", 2, "2 scored")
    skip_case("vcf_unsorted", "records out of order are scored in input order",
              hdr + "".join(reversed(good_rows)), "unsorted.vcf", 3, "3 scored")
    skip_case("vcf_contig_missing_from_header", "record on a contig the header does not declare",
              "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n" + "".join(good_rows),
              "contig_not_in_header.vcf", 3, "3 scored")
    skip_case("vcf_crlf", "Windows line endings", (hdr + "".join(good_rows)).replace("\n", "\r\n"),
              "crlf.vcf", 3, "3 scored")
    skip_case("vcf_header_only", "a header and no records", hdr, "header_only.vcf", 0, "0 records")
    # another genome build: SNVs on hg19 chr17 (BRCA1) scored against the shipped hg38 reference
    from genomod.data_paths import brca1_reference
    from genomod.io import ReferenceGenome

    hg19 = ReferenceGenome(brca1_reference("hg19"))
    rows = []
    for pos in range(41_245_000, 41_245_000 + 40 * 37, 37):
        base = hg19.fetch("chr17", pos - 1, pos).upper()
        rows.append(f"chr17\t{pos}\t.\t{base}\t{'A' if base != 'A' else 'G'}\t.\tPASS\t.\n")
    p = vcf("hg19_on_hg38.vcf", "##fileformat=VCFv4.2\n##contig=<ID=chr17,length=81195210>\n"
            "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n" + "".join(rows))
    c.case("vcf_other_build", "vcf", "hg19 VCF against the hg38 reference", [
        error([a if a != "{dir}/good/ref.fa" else "{hg38}" for a in score(p)], "hg19_on_hg38.vcf",
              "another genome build")])
    # BCF
    import pysam

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.vcf"
        src.write_text(hdr + "".join(c.row("chr1", p) for p in range(10, 1100, 2)))
        with pysam.VariantFile(str(src)) as vin, pysam.VariantFile(str(Path(tmp) / "x.bcf"), "wb",
                                                                    header=vin.header) as vout:
            for rec in vin:
                vout.write(rec)
        bcf = (Path(tmp) / "x.bcf").read_bytes()
    err_case("bcf_truncated", "BCF cut in the middle", bcf[: len(bcf) // 2], "truncated.bcf", "truncated")
    raw = gzip.decompress(bcf)
    err_case("bcf_bad_header", "BCF magic followed by garbage",
             _gzip(raw[:5] + struct.pack("<I", 40) + b"\x00garbage-garbage-garbage-garbage-garb\x00" + raw[60:]),
             "bad_header.bcf", "not a valid VCF/BCF")


def bed_cases(c: Corpus) -> None:
    def case(cid: str, about: str, body: str | bytes, fname: str, *contains: str) -> None:
        p = "{dir}/" + c.write(f"bed/{fname}", body)
        c.case(cid, "bed", about, [
            error(SCORE + ["-i", "{dir}/good/in.vcf", "-r", "{dir}/good/ref.fa", "--regions", p], fname, *contains),
            error(SHARDS + ["--fasta", "{dir}/good/ref.fa", "--exclude", p], fname, *contains),
        ])

    case("bed_two_columns", "a line with 2 columns", "chr1\t0\t100\nchr1\t200\n", "two_columns.bed", "line 2")
    case("bed_text_start", "non-integer start", "# exclusion list\nchr1\tstart\t100\n", "text_start.bed",
         "line 2", "integers")
    case("bed_end_before_start", "end < start", "chr1\t500\t100\n", "end_before_start.bed", "line 1")
    case("bed_negative", "negative start", "chr1\t10\t20\nchr1\t-5\t100\n", "negative.bed", "line 2")
    case("bed_binary", "binary garbage", b"chr1\t0\t10\n" + bytes(range(128, 256)) * 8, "binary.bed",
         "line 2", "not a text BED")
    gz = _gzip(b"".join(f"chr1\t{i}\t{i + 5}\n".encode() for i in range(0, 20000, 10)))
    case("bed_truncated_gzip", "gzip BED cut in the middle", gz[: len(gz) // 2], "truncated.bed.gz",
         "truncated")


def config_cases(c: Corpus) -> None:
    def case(cid: str, about: str, body: str | bytes, fname: str, *contains: str) -> None:
        p = "{dir}/" + c.write(f"config/{fname}", body)
        c.case(cid, "config", about, [error(TRAIN + ["--config", p], fname, *contains)])

    case("config_unknown_key", "a misspelled key", "model:\n  preset: tiny\ntrain:\n  lr: 0.001\n  lerning_rate: 1\n",
         "unknown_key.yaml", "train.lerning_rate", "unknown key")
    case("config_unknown_section", "an unknown top-level section", "trainer:\n  lr: 0.001\n",
         "unknown_section.yaml", "trainer", "unknown key")
    case("config_unknown_model_key", "a model field that does not exist",
         "model:\n  preset: tiny\n  hiden_size: 64\n", "unknown_model_key.yaml", "hiden_size")
    case("config_yaml_syntax", "broken YAML (unclosed bracket)", "train:\n  lr: 0.001\n  betas: [0.9, 0.95\n",
         "yaml_syntax.yaml", "line 4")
    case("config_wrong_type", "a string where a number is expected", "train:\n  lr: fast\n",
         "wrong_type.yaml", "train.lr", "must be a number")
    case("config_not_mapping", "a list at top level", "- model\n- train\n", "not_mapping.yaml", "mapping")
    case("config_json_trailing_comma", "JSON with a trailing comma", '{"train": {"lr": 0.001,}}\n',
         "trailing_comma.json", "line 1")
    case("config_binary", "binary garbage", bytes(random.Random(5).randrange(256) for _ in range(512)),
         "binary.yaml", "cannot parse")


def checkpoint_cases(c: Corpus) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from genomod.checkpoint import save_model
    from genomod.model import ModelConfig, build_model

    def micro(hidden: int) -> torch.nn.Module:
        torch.manual_seed(0)
        cfg = ModelConfig.preset("tiny", hidden_size=hidden, inner_mlp_size=2 * hidden, li_filter_groups=hidden,
                                 se_filter_groups=4, mr_filter_groups=4, num_attention_heads=2,
                                 layer_types=["SE", "MHA"], mr_filter_length=16, name=f"micro{hidden}")
        return build_model(cfg).eval()

    def runs(folder: str, *contains: str) -> list[dict]:
        model = ["--model", "{dir}/" + folder]
        return [error(SCORE + ["-i", "{dir}/good/in.vcf", "-r", "{dir}/good/ref.fa"] + model, *contains),
                error(MUTAGENESIS + ["-r", "{dir}/good/ref.fa"] + model, *contains),
                error(EVAL + model, *contains)]

    def weights_of(folder: Path, drop_first: bool = False) -> bytes:
        """Weights re-saved without metadata (safetensors orders metadata keys at random: keep bytes stable)."""
        tensors = load_file(str(folder / "model.safetensors"))
        if drop_first:
            tensors.pop(sorted(tensors)[0])
        save_file(tensors, str(folder / "stable.safetensors"))
        return (folder / "stable.safetensors").read_bytes()

    with tempfile.TemporaryDirectory() as tmp:
        good, small = Path(tmp) / "good", Path(tmp) / "small"
        save_model(micro(16), good)
        save_model(micro(8), small)
        config = json.loads((good / "config.json").read_text())
        config["genomod_version"] = "corpus"  # stable bytes across genomod releases
        weights, small_weights = weights_of(good), weights_of(small)
        missing_weights = weights_of(good, drop_first=True)

    def ckpt(cid: str, weights_bytes: bytes | None, cfg: dict | str | None) -> str:
        folder = f"checkpoint/{cid}"
        if weights_bytes is not None:
            c.write(f"{folder}/model.safetensors", weights_bytes)
        if cfg is not None:
            c.write(f"{folder}/config.json", cfg if isinstance(cfg, str) else json.dumps(cfg, indent=2) + "\n")
        return folder

    bad_header = struct.pack("<Q", 60) + b'{"embedding.weight": {"dtype": "F32", "shape": [' + b"x" * 8
    c.case("ckpt_bad_header", "checkpoint", "safetensors header that is not JSON",
           runs(ckpt("ckpt_bad_header", bad_header + weights[68:], config), "model.safetensors", "corrupt"))
    c.case("ckpt_huge_header", "checkpoint", "safetensors header length larger than the file",
           runs(ckpt("ckpt_huge_header", struct.pack("<Q", 1 << 40) + weights[8:], config), "model.safetensors"))
    c.case("ckpt_truncated", "checkpoint", "safetensors cut in the middle",
           runs(ckpt("ckpt_truncated", weights[: len(weights) // 2], config), "model.safetensors"))
    c.case("ckpt_empty_weights", "checkpoint", "0-byte model.safetensors",
           runs(ckpt("ckpt_empty_weights", b"", config), "model.safetensors"))
    c.case("ckpt_shape_mismatch", "checkpoint", "weights of an 8-wide model under a 16-wide config",
           runs(ckpt("ckpt_shape_mismatch", small_weights, config), "model.safetensors", "shape"))
    c.case("ckpt_missing_tensor", "checkpoint", "one tensor missing from the weights",
           runs(ckpt("ckpt_missing_tensor", missing_weights, config), "model.safetensors", "missing"))
    c.case("ckpt_no_weights", "checkpoint", "config.json without model.safetensors",
           runs(ckpt("ckpt_no_weights", None, config), "ckpt_no_weights", "model.safetensors"))
    c.case("ckpt_config_corrupt", "checkpoint", "config.json cut in the middle",
           runs(ckpt("ckpt_config_corrupt", weights, json.dumps(config)[:200]), "config.json", "line"))
    unknown = json.loads(json.dumps(config))
    unknown["model"]["hidden_sise"] = 16
    c.case("ckpt_config_unknown_key", "checkpoint", "model config with an unknown key",
           runs(ckpt("ckpt_config_unknown_key", weights, unknown), "config.json", "hidden_sise"))
    newer = dict(config, format_version=99)
    c.case("ckpt_newer_format", "checkpoint", "checkpoint written by a newer genomod",
           runs(ckpt("ckpt_newer_format", weights, newer), "config.json", "newer"))


def shard_cases(c: Corpus) -> None:
    """Shard folders for ``genomod train``: HDF5 files that are not HDF5."""
    c.write("shards/garbage/train.h5", b"not an HDF5 file\n" * 10)
    c.write("shards/garbage/val.h5", b"not an HDF5 file\n" * 10)
    c.case("shards_not_hdf5", "shards", "train.h5/val.h5 that are not HDF5",
           [error([a.replace("{shards}", "{dir}/shards/garbage") for a in TRAIN], "train.h5", "HDF5")])


def build(out: Path) -> int:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    c = Corpus(out)
    c.good_inputs()
    for make in (fasta_cases, fai_cases, vcf_cases, bed_cases, config_cases, checkpoint_cases, shard_cases):
        make(c)
    ids = [k["id"] for k in c.cases]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    (out / "cases.json").write_text(json.dumps({"generator": "scripts/make_malformed_corpus.py",
                                                "cases": c.cases}, indent=1) + "\n")
    (out / "README.md").write_text(
        "# Malformed-input corpus\n\nGenerated by `python scripts/make_malformed_corpus.py` (do not edit by hand);\n"
        "`cases.json` says what each input is and what every entry point must do with it.\n"
        "Run by `tests/test_robustness_malformed.py`.\n")
    return len(c.cases)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="compare a fresh build with --out; exit 1 if they differ")
    args = ap.parse_args(argv)
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            build(Path(tmp) / "c")
            cmp = filecmp.dircmp(Path(tmp) / "c", args.out)
            stale = _differences(cmp)
        if stale:
            print("stale corpus, rerun scripts/make_malformed_corpus.py:", *stale[:20], sep="\n  ")
            return 1
        print(f"{args.out}: up to date")
        return 0
    n = build(args.out)
    print(f"wrote {n} cases to {args.out}")
    return 0


def _differences(cmp: filecmp.dircmp, prefix: str = "") -> list[str]:
    out = [prefix + n for n in cmp.left_only + cmp.right_only + cmp.diff_files]
    for name, sub in cmp.subdirs.items():
        out += _differences(sub, f"{prefix}{name}/")
    return out


if __name__ == "__main__":
    sys.exit(main())
