"""The calculus: symbolic derivatives on the IR, shown to users as formulas.

Reverse mode (derive.py: fn.formulas, fn.intermediate_formulas) and forward mode
(tangent.py: fn.tangents); second order, forward over reverse (second.py: the gradient cell,
fn.hvp_formulas, fn.hessian_formulas, and the cells fn.hvp and fn.hessian compile), with the
δs a Hessian sums away (simplify.py). Each formula is itself a statement of the language.

May import: language.
"""
