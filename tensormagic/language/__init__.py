"""The language: statement text → checked cell, and back to text.

Owns the syntax tree / IR (ir.py: frozen expression nodes, the one data model), parsing
through Python's ast, whitelisted (parse.py), constant folding (numbers.py), the elementwise
functions and their derivative rules (functions.py), the summation rule that places every Σ
(sums.py), whole cells with their inputs and outputs (cell.py), each index's range at call
time (ranges.py), the printer that writes IR back as index notation (printer.py), and the one
error family with carets (errors.py).

May import: nothing else of tensormagic (and no torch, no IPython).
"""
