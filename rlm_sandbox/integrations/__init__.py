"""Ways in from other tools: each module here wraps the RLM for one ecosystem and
imports that ecosystem's package only when used (they are optional extras)."""
