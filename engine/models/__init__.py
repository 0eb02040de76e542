"""Models: loading and saving (loading), the builtin tiny model (tiny, builtin), generation backends (generation, vllm_backend)."""
