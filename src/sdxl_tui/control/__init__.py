"""Actions (launch, kill, evaluate): the one implementation behind keys and CLI."""
