"""ngrok Traffic Policy, the pure core: documents, CEL expressions, actions and their evaluation.

See docs/traffic-policy.md. The edge calls :meth:`Policy.run` for each phase with the variables
it knows and carries out the actions it gets back.
"""

from .policy import VARIABLES, Policy, Rule, compile_policy

__all__ = ["VARIABLES", "Policy", "Rule", "compile_policy"]
