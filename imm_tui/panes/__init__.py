"""The tabs of a run's detail screen: one module per pane, each a widget built from a run id."""
