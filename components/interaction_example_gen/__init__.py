"""ExampleGen for the interaction tables: interactions joined with item and user features."""
