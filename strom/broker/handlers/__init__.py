"""One module per API family; each handler reads like the protocol doc."""
