"""The calculus: symbolic derivatives on the IR, shown to users as formulas.

Reverse mode (derive.py: fn.formulas, fn.intermediate_formulas) and forward mode
(tangent.py: fn.tangents). Each formula is itself a statement of the language.

May import: language.
"""
