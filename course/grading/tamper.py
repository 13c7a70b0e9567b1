"""A review aid for the instructor: a static scan of the learner's cells for techniques that only an attempt
on the grader needs (process exits, tracing hooks, torch dispatch overrides, IPython hooks, the interpreter's
internals).

    scan_cell(source) -> ["line 3: uses sys.settrace", ...]   # empty: nothing to review

Findings are notes (status `flagged`, reason `review: ...`); they never change a score: the comparison runs
outside the learner's process, so no technique found here can raise one. Ordinary code (`import inspect`, a
parameter named `input`, re-running the set-up cell's imports) is not reported.
"""

from __future__ import annotations

import ast

# Modules an answer never needs and an attack on the grader might: importing one is noted.
BANNED_MODULES = {
    "ctypes",
    "cffi",
    "subprocess",
    "sqlite3",
    "socket",
    "urllib",
    "http",
    "requests",
    "httpx",
    "ssl",
    "ftplib",
    "smtplib",
    "pty",
    "signal",
    "marshal",
    "nbgrader",
    "ipykernel",
    "faulthandler",
    "mmap",
}
# Built-in names whose use is noted (process exit, dynamic code).
BANNED_CALLS = {"exec", "eval", "compile", "exit", "quit", "__import__"}
# Attributes that reach into the interpreter, the shell or torch's dispatch.
BANNED_ATTRS = {
    "__globals__",
    "__code__",
    "__closure__",
    "__subclasses__",
    "__builtins__",
    "__getattribute__",
    "__torch_function__",
    "__torch_dispatch__",
    "f_globals",
    "f_locals",
    "f_back",
    "gi_frame",
    "tb_frame",
    "_getframe",
    "settrace",
    "setprofile",
    "_exit",
    "kill",
    "killpg",
    "fork",
    "forkpty",
    "system",
    "popen",
    "execv",
    "execve",
    "setsid",
    "displayhook",
    "excepthook",
    "addaudithook",
    "set_custom_exc",
    "input_transformers_post",
    "input_transformers_cleanup",
    "ast_transformers",
    "events",
    "TorchFunctionMode",
    "TorchDispatchMode",
    "library",
    "_C",
}
GUARDED_ROOTS = {"H", "torch", "np", "numpy", "math", "sys", "builtins", "os", "F"}  # patching these is noted
SAFE_MAGICS = {"matplotlib", "time", "timeit", "precision", "pprint", "who", "whos", "load_ext", "autoreload"}


class _Scanner(ast.NodeVisitor):
    def __init__(self) -> None:
        self.findings: list[str] = []

    def report(self, node: ast.AST, what: str) -> None:
        self.findings.append(f"line {getattr(node, 'lineno', 0)}: {what}")

    def _root(self, node: ast.AST) -> str | None:
        while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
            node = node.func if isinstance(node, ast.Call) else node.value
        return node.id if isinstance(node, ast.Name) else None

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._imported(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self._imported(node, node.module or "")

    def _imported(self, node: ast.AST, module: str) -> None:
        if module.split(".")[0] in BANNED_MODULES:
            self.report(node, f"imports {module}")

    def _target(self, node: ast.AST, target: ast.AST, verb: str) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for t in target.elts:
                self._target(node, t, verb)
        elif isinstance(target, ast.Starred):
            self._target(node, target.value, verb)
        elif isinstance(target, (ast.Attribute, ast.Subscript)):
            root = self._root(target)
            dunder = isinstance(target, ast.Attribute) and _dunder(target.attr)
            if root in GUARDED_ROOTS or dunder:
                self.report(node, f"{verb} {ast.unparse(target)}")

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._target(node, target, "assigns to")
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

    def visit_For(self, node: ast.For) -> None:
        self._target(node, node.target, "rebinds")
        self.generic_visit(node)

    visit_AsyncFor = visit_For

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in BANNED_CALLS or node.id in BANNED_ATTRS and _dunder(node.id):
            self.report(node, f"uses {node.id}")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in BANNED_ATTRS:
            self.report(node, f"uses {ast.unparse(node)}")
        self.generic_visit(node)

    def visit_Raise(self, node: ast.Raise) -> None:
        exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        if isinstance(exc, ast.Name) and exc.id in ("SystemExit", "KeyboardInterrupt", "GeneratorExit"):
            self.report(node, f"raises {exc.id}")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if (
            isinstance(func, ast.Attribute)
            and func.attr in ("run_line_magic", "run_cell_magic", "system", "getoutput")
            and self._root(func) == "get_ipython"
        ):
            name = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else "?"
            if func.attr.startswith("run_") and str(name).split()[0] in SAFE_MAGICS:
                return
            self.report(
                node, f"IPython {'magic %' + str(name) if func.attr.startswith('run_') else 'shell escape'}"
            )
            return
        self.generic_visit(node)


def _dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


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
