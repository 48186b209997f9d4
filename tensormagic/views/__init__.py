"""The views: how a cell and its derivation are shown.

LaTeX (latex.py) and MathML (mathml.py) of statements and formulas, the readable rewrites both
show (readable.py: fractions, powers, named repeats) and a long cell's named sub-expressions
(naming.py); the Hessian's blocks (second.py); tensor-network diagrams (diagram.py, placed by graphlayout.py) and the plan's
picture (plandiagram.py); the generated code as highlighted, folded HTML (codeview.py).
Plain text is the language's own printer (language/printer.py).

May import: language, calculus (formulas to show). Never compiler, runtime or frontends: a
plan or a compiled signature reaches a view as a value.
"""
