#!/usr/bin/env python3
"""Regenerate vrcft_v2_parameters.txt and vrcft_flags.txt from VRCFaceTracking's C# source.

Usage:
    python tests/data/extract_vrcft.py SOURCE [--rev REV] [--out-dir DIR | --stdout]

SOURCE is either a checkout (work tree) of https://github.com/benaclejames/VRCFaceTracking
or a bare git directory of it (then files are read with ``git show REV:path``).
Nothing is typed by hand: every name comes from regexes over these files:

  VRCFaceTracking.Core/Params/Expressions/UnifiedExpressions.cs            enum UnifiedExpressions
  VRCFaceTracking.Core/Params/Expressions/UnifiedSimpleExpressions.cs      enum UnifiedSimpleExpressions
  VRCFaceTracking.Core/Params/Expressions/UnifiedExpressionsParameters.cs  UnifiedCombinedShapes
  VRCFaceTracking.Core/Params/Expressions/UnifiedHeadParameters.cs         HeadParameters

The output is deterministic (no timestamps) so a test can regenerate and diff it.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

REPO_URL = "https://github.com/benaclejames/VRCFaceTracking"
EXPR_DIR = "VRCFaceTracking.Core/Params/Expressions/"
F_ENUM = EXPR_DIR + "UnifiedExpressions.cs"
F_SIMPLE = EXPR_DIR + "UnifiedSimpleExpressions.cs"
F_PARAMS = EXPR_DIR + "UnifiedExpressionsParameters.cs"
F_HEAD = EXPR_DIR + "UnifiedHeadParameters.cs"
F_BASEPARAM = "VRCFaceTracking.Core/OSC/DataTypes/BaseParameter.cs"
F_CONTAINERS = "VRCFaceTracking.Core/Params/DataTypes/ParamContainers.cs"

V2 = "v2/"
AVATAR_PREFIX_FALLBACK = "/avatar/parameters/"
# C# value type -> OSC type tags VRCFT emits (OSC/OSCUtils.cs; structs are sent field by field, OSCMessage.cs)
OSC_TAGS = {"bool": "T/F", "float": "f", "Vector2": "ff", "Vector4": "ffff"}


class Source:
    """Reads files from a work tree or from a (bare) git directory."""

    def __init__(self, path: str, rev: str = "HEAD"):
        self.path = path
        self.rev = rev
        self.is_git_dir = (not os.path.isdir(os.path.join(path, "VRCFaceTracking.Core"))
                           and os.path.isdir(os.path.join(path, "objects"))
                           and os.path.exists(os.path.join(path, "HEAD")))

    def _git(self, *args: str) -> str:
        base = ["git", "--git-dir", self.path] if self.is_git_dir else ["git", "-C", self.path]
        return subprocess.run(base + list(args), check=True, capture_output=True,
                              text=True, encoding="utf-8").stdout

    def read(self, rel: str) -> str:
        if self.is_git_dir:
            text = self._git("show", f"{self.rev}:{rel}")
        else:
            with open(os.path.join(self.path, rel), encoding="utf-8-sig") as fh:
                text = fh.read()
        return text.lstrip("\ufeff")

    def commit(self) -> str:
        try:
            if not self.is_git_dir:
                # only trust git if SOURCE is the top of its own repository
                top = self._git("rev-parse", "--show-toplevel").strip()
                if os.path.realpath(top) != os.path.realpath(self.path):
                    return "unknown"
            return self._git("rev-parse", self.rev).strip()
        except (subprocess.CalledProcessError, FileNotFoundError):
            return "unknown"


def strip_comments(cs: str) -> str:
    """Remove // and /* */ comments, leaving string literals intact."""
    out, i, n = [], 0, len(cs)
    while i < n:
        c = cs[i]
        if c == '"':  # string literal (no verbatim/interpolated strings in these files)
            j = i + 1
            while j < n and cs[j] != '"':
                j += 2 if cs[j] == "\\" else 1
            out.append(cs[i:j + 1])
            i = j + 1
        elif cs.startswith("//", i):
            j = cs.find("\n", i)
            i = n if j < 0 else j
        elif cs.startswith("/*", i):
            j = cs.find("*/", i + 2)
            i = n if j < 0 else j + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def enum_members(cs: str, enum_name: str) -> list[str]:
    code = strip_comments(cs)
    m = re.search(r"\benum\s+" + re.escape(enum_name) + r"\b[^{]*\{(.*?)\}", code, re.S)
    if not m:
        raise SystemExit(f"enum {enum_name} not found")
    body = re.sub(r"^\s*#.*$", "", m.group(1), flags=re.M)  # #region / #endregion
    names = []
    for item in body.split(","):
        item = item.strip()
        if not item:
            continue
        mm = re.fullmatch(r"([A-Za-z_]\w*)\s*(=\s*[^,]+)?", item)
        if not mm:
            raise SystemExit(f"unparsed enum member in {enum_name}: {item!r}")
        names.append(mm.group(1))
    return names


def call_args(code: str, start: int) -> str:
    """Text between the '(' at/after start and its matching ')'."""
    i = code.index("(", start)
    depth, j = 0, i
    while True:
        ch = code[j]
        if ch == '"':
            j += 1
            while code[j] != '"':
                j += 2 if code[j] == "\\" else 1
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return code[i + 1:j]
        j += 1


def eparams(cs: str) -> list[tuple[str, bool]]:
    """(name, is_vector2) for every `new EParam("name", exp => ...)` in source order.

    EParam has a Vector2 overload (ParamContainers.cs) which emits name+"X" and name+"Y";
    it is used where the lambda returns a `.Gaze` (Vector2) value.
    """
    code = strip_comments(cs)
    found = []
    for m in re.finditer(r"\bnew\s+EParam\s*\(", code):
        args = call_args(code, m.start())
        nm = re.match(r'\s*"([^"]+)"\s*,\s*(.*)$', args, re.S)
        if not nm:
            # GetAllBaseExpressions()/GetAllBaseSimpleExpressions() build names as
            # "v2/" + <enum>.ToString(); those come from the enums instead.
            if re.match(r'\s*"v2/"\s*\+\s*\w+\.ToString\(\)', args):
                continue
            raise SystemExit(f"unparsed EParam: {args[:80]!r}")
        lam = nm.group(2).strip()
        is_vec2 = re.search(r"\.Gaze\s*$", lam) is not None
        found.append((nm.group(1), is_vec2))
    return found


def conditional_bools(cs: str) -> list[str]:
    code = strip_comments(cs)
    return [call_args(code, m.start()).rsplit(",", 1)[1].strip().strip('"')
            for m in re.finditer(r"\bnew\s+ConditionalBoolParameter\s*\(", code)]


def native_params(cs: str) -> list[tuple[str, str]]:
    code = strip_comments(cs)
    out = []
    for m in re.finditer(r"\bnew\s+NativeParameter\s*<\s*(\w+)\s*>\s*\(", code):
        args = call_args(code, m.start())
        addr = re.findall(r'"(/[^"]+)"', args)[-1]
        out.append((addr, OSC_TAGS.get(m.group(1), m.group(1))))
    return out


def default_prefix(cs: str) -> str:
    m = re.search(r'DefaultPrefix\s*=\s*"([^"]+)"', cs)
    return m.group(1) if m else AVATAR_PREFIX_FALLBACK


def strip_v2(name: str) -> str:
    if not name.startswith(V2):
        raise SystemExit(f"expected a v2/ name, got {name!r}")
    return name[len(V2):]


def build(src: Source, commit: str | None = None) -> tuple[str, str]:
    commit = commit or src.commit()
    base = [n for n in enum_members(src.read(F_ENUM), "UnifiedExpressions") if n != "Max"]
    simple = enum_members(src.read(F_SIMPLE), "UnifiedSimpleExpressions")
    params_cs = src.read(F_PARAMS)
    combined = []
    for name, vec2 in eparams(params_cs):
        n = strip_v2(name)
        combined += [n + "X", n + "Y"] if vec2 else [n]
    head = [strip_v2(n) for n, vec2 in eparams(src.read(F_HEAD))]

    rows, seen = [], set()
    for kind, names in (("base", base), ("combined", simple), ("combined", combined), ("head", head)):
        for n in names:
            if n in seen:  # C# Union() would keep the first; names are in fact unique
                continue
            seen.add(n)
            rows.append(f"{n}\t{kind}")

    flags = conditional_bools(params_cs)
    natives = native_params(params_cs)
    prefix = default_prefix(src.read(F_BASEPARAM))

    src_note = [
        f"# Source: {REPO_URL}",
        f"# Commit: {commit}",
        "# Generated by tests/data/extract_vrcft.py (regex over the C# source; do not edit by hand).",
    ]
    params_txt = "\n".join(src_note + [
        "# Files:",
        f"#   {F_ENUM}  -- enum UnifiedExpressions (kind=base; sentinel 'Max' dropped)",
        f"#   {F_SIMPLE}  -- enum UnifiedSimpleExpressions (kind=combined)",
        f"#   {F_PARAMS}  -- UnifiedCombinedShapes `new EParam(\"v2/...\")` (kind=combined;",
        "#       the Vector2 EParam overload for .Gaze emits <name>X and <name>Y, see " + F_CONTAINERS + ")",
        f"#   {F_HEAD}  -- HeadParameters (kind=head; in UnifiedTracking.AllParameters, not AllParameters_v2)",
        "# Format: <name after 'v2/'><TAB><kind>. VRCFT matches an avatar float parameter whose full address",
        "#   ends in '/v2/<name>' (any prefix, e.g. /avatar/parameters/FT/v2/<name>) and sends to that address;",
        f"#   default address (forceRelevant / no avatar info) is {prefix}v2/<name>.",
        "# Every EParam also creates a bool '<name>' (value < threshold) and binary bools '<name>1,2,4,..'",
        "#   plus '<name>Negative' (BinaryBaseParameter); those are not listed. Legacy v1 names are not listed.",
    ] + rows) + "\n"

    flags_txt = "\n".join(src_note + [
        f"# File: {F_PARAMS}  -- `new ConditionalBoolParameter(..., \"<name>\")` and `new NativeParameter<T>(..., \"<address>\")`",
        "# Format: <name or address><TAB><OSC type tags><TAB><kind><TAB><default full address>",
        "# kind=flag: bool avatar parameter named WITHOUT a v2/ prefix. VRCFT sends it to the avatar's own",
        "#   address if one ends in '/<name>' and the segment before is not 'v<digits>' (so FT/<name> works,",
        "#   FT/v2/<name> does NOT); with forceRelevant it goes to the default address.",
        "# kind=native: VRChat native eye-tracking OSC address (not an avatar parameter); VRCFT sends it only",
        "#   when the avatar has no matching VRCFT eye parameter (gaze: name with Eye+X/Y; lid: Eye+Open/Lid).",
    ] + [f"{n}\t{OSC_TAGS['bool']}\tflag\t{prefix}{n}" for n in flags]
      + [f"{a}\t{t}\tnative\t{a}" for a, t in natives]) + "\n"
    return params_txt, flags_txt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="VRCFaceTracking checkout or bare git dir")
    ap.add_argument("--rev", default="HEAD", help="revision to read (git sources; default HEAD)")
    ap.add_argument("--commit", help="commit hash to record when SOURCE is a plain (non-git) tree")
    ap.add_argument("--out-dir", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--stdout", action="store_true", help="print instead of writing files")
    a = ap.parse_args(argv)
    params_txt, flags_txt = build(Source(a.source, a.rev), a.commit)
    if a.stdout:
        sys.stdout.write(params_txt + "\n" + flags_txt)
        return 0
    for fname, txt in (("vrcft_v2_parameters.txt", params_txt), ("vrcft_flags.txt", flags_txt)):
        with open(os.path.join(a.out_dir, fname), "w", encoding="utf-8", newline="\n") as fh:
            fh.write(txt)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
