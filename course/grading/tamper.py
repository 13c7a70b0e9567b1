"""Tamper detection for learner code: a static scan of the learner's cells before grading, and a runtime probe
injected into the graded notebook that reports the grading harness's integrity snapshot.

    scan_cell(source) -> ["line 3: assigns to torch.allclose", ...]   # empty: nothing suspicious
    probe_source(nonce) -> the code of an injected probe cell; read_probe(outputs, nonce) -> findings or None
"""
from __future__ import annotations

import ast
import json
import os
import sys

# Modules a learner's answer never needs; importing one is reported.
BANNED_MODULES = {
    "ctypes", "cffi", "gc", "inspect", "subprocess", "sqlite3", "socket", "urllib", "http", "requests", "httpx",
    "ssl", "ftplib", "smtplib", "multiprocessing", "concurrent", "pty", "signal", "importlib", "builtins",
    "marshal", "pickle", "shutil", "resource", "mmap", "site", "code", "codeop", "nbformat", "nbgrader",
    "IPython", "ipykernel", "asyncio", "threading", "_thread", "sysconfig", "tempfile", "pathlib", "io", "glob",
    "zipfile", "tarfile", "webbrowser", "dis", "types", "weakref", "atexit", "faulthandler", "tracemalloc",
}
# Built-in names whose use in an answer is reported (process exit, dynamic code, files, introspection).
BANNED_CALLS = {"exec", "eval", "compile", "open", "exit", "quit", "breakpoint", "input", "setattr", "delattr",
                "globals", "vars", "locals", "__import__", "memoryview", "help"}
# Attributes that reach into the interpreter's machinery.
BANNED_ATTRS = {"__dict__", "__class__", "__globals__", "__code__", "__closure__", "__subclasses__", "__mro__",
                "__bases__", "__builtins__", "__getattribute__", "__setattr__", "__delattr__", "__import__",
                "__loader__", "__spec__", "f_globals", "f_locals", "f_back", "gi_frame", "tb_frame", "__self__",
                "__func__", "__wrapped__", "modules", "_getframe", "settrace", "setprofile", "_exit", "kill",
                "killpg", "fork", "forkpty", "system", "popen", "spawnl", "spawnv", "execv", "execve", "execl",
                "execlp", "execvp", "setsid", "remove", "unlink", "rmdir", "removedirs", "rename", "replace",
                "chmod", "chown", "symlink", "link", "chdir", "putenv", "unsetenv", "write_text", "write_bytes",
                "read_text", "read_bytes", "mkfifo", "truncate", "exit", "abort", "displayhook", "excepthook",
                "addaudithook", "register_at_fork"}
NOTEBOOK_NAMES = {"H", "torch"}  # names the test cells rely on (course.grading.harness.NAMESPACE)
SAFE_MAGICS = {"matplotlib", "time", "timeit", "precision", "pprint", "who", "whos"}
PROBE_MARK = "course-grading-integrity"


class _Scanner(ast.NodeVisitor):
    def __init__(self) -> None:
        self.imported: set[str] = set()  # names bound to modules or to objects taken from modules
        self.findings: list[str] = []
        self.depth = 0  # > 0 inside a function: plain names are locals there

    def report(self, node: ast.AST, what: str) -> None:
        self.findings.append(f"line {getattr(node, 'lineno', 0)}: {what}")

    def _root(self, node: ast.AST) -> str | None:
        while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
            node = node.func if isinstance(node, ast.Call) else node.value
        return node.id if isinstance(node, ast.Name) else None

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._imported(node, alias.name, alias.asname or alias.name.split(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            self._imported(node, node.module or "", alias.asname or alias.name)

    def _imported(self, node: ast.AST, module: str, bound: str) -> None:
        if module.split(".")[0] in BANNED_MODULES:
            self.report(node, f"imports {module}")
        if bound in NOTEBOOK_NAMES and module.split(".")[0] != bound:
            self.report(node, f"rebinds the notebook name {bound!r}")
        self.imported.add(bound)

    def _target(self, node: ast.AST, target: ast.AST, verb: str) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for t in target.elts:
                self._target(node, t, verb)
        elif isinstance(target, ast.Starred):
            self._target(node, target.value, verb)
        elif isinstance(target, ast.Name):
            if target.id in NOTEBOOK_NAMES and self.depth == 0:
                self.report(node, f"{verb} the notebook name {target.id!r}")
        elif isinstance(target, (ast.Attribute, ast.Subscript)):
            root = self._root(target)
            dunder = isinstance(target, ast.Attribute) and _dunder(target.attr)
            if root in self.imported or root in NOTEBOOK_NAMES or dunder:
                self.report(node, f"{verb} {ast.unparse(target)}")

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._target(node, target, "assigns to")
        if _is_chain(node.value) and self._root(node.value) in self.imported | NOTEBOOK_NAMES:  # `t = torch.Tensor`
            self.imported |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._target(node, node.target, "assigns to")
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._target(node, node.target, "assigns to")
        self.generic_visit(node)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self._target(node, target, "deletes")
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global) -> None:
        for name in sorted(set(node.names) & NOTEBOOK_NAMES):
            self.report(node, f"declares the notebook name {name!r} global")

    def visit_For(self, node: ast.For) -> None:
        self._target(node, node.target, "rebinds")
        self.generic_visit(node)

    visit_AsyncFor = visit_For

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        if getattr(node, "name", None) in NOTEBOOK_NAMES and self.depth == 0:
            self.report(node, f"rebinds the notebook name {node.name!r}")
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_FunctionDef

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in BANNED_CALLS or node.id in BANNED_ATTRS and _dunder(node.id):
            self.report(node, f"uses {node.id}")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in BANNED_ATTRS and (_dunder(node.attr) or self._root(node) in self.imported):
            self.report(node, f"uses {ast.unparse(node)}")
        self.generic_visit(node)

    def visit_Raise(self, node: ast.Raise) -> None:
        exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        if isinstance(exc, ast.Name) and exc.id in ("SystemExit", "KeyboardInterrupt", "GeneratorExit"):
            self.report(node, f"raises {exc.id}")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in ("run_line_magic", "run_cell_magic", "system",
                                                              "getoutput") and self._root(func) == "get_ipython":
            name = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else "?"
            if func.attr.startswith("run_") and str(name).split()[0] in SAFE_MAGICS:
                return
            self.report(node, f"IPython {'magic %' + str(name) if func.attr.startswith('run_') else 'shell escape'}")
            return
        self.generic_visit(node)


def _dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def _is_chain(node: ast.AST) -> bool:
    """`a` or `a.b.c`: an alias of a module or of something in it (not a value computed from it)."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name)


def scan_cell(source: str) -> list[str]:
    """Findings for one learner code cell (IPython magics and `!` escapes are translated first)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
        source = TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - a cell IPython cannot even transform fails on its own when run
        pass
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []  # raises when executed: an ordinary error, not tampering
    scanner = _Scanner()
    scanner.visit(tree)
    return scanner.findings


# --- runtime probe (runs inside the learner's kernel) -----------------------------------------------------------
def probe_source(nonce: str) -> str:
    return f"from course.grading.tamper import probe as _course_probe\n_course_probe({nonce!r})"


def probe(nonce: str) -> None:
    """Print the harness's integrity report, tagged with `nonce` (unknown to learner code)."""
    harness = sys.modules.get("course.grading.harness")
    expected = os.path.join(os.path.dirname(os.path.abspath(__file__)), "harness.py")
    if harness is None:
        problems = ["the grading harness was never set up"]
    elif getattr(getattr(harness.integrity_report, "__code__", None), "co_filename", None) != expected:
        problems = ["the grading harness module was replaced"]
    else:
        problems = list(harness.integrity_report())
    print(f"{PROBE_MARK} {nonce} {json.dumps(problems)}", flush=True)


def read_probe(outputs: list[dict], nonce: str) -> list[str] | None:
    """Findings of an executed probe cell; None when it printed no report (it did not run, or was silenced)."""
    head = f"{PROBE_MARK} {nonce} "
    for out in outputs:
        for line in str(out.get("text", "")).splitlines():
            if line.startswith(head):
                try:
                    found = json.loads(line[len(head):])
                except ValueError:
                    return None
                return [str(f) for f in found] if isinstance(found, list) else None
    return None
