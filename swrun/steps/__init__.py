"""The checklist steps of the guide, one module each; every ``run`` returns a StepResult."""
