"""The planner: what each branch targets, what it is stacked on, what state it is in, and
in what order the work runs. Pure: it decides from the facts `palign.engine.facts`
gathers from git, and never loads pygit2 itself."""
