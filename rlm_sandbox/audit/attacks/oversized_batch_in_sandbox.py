llm_query_batched(["x"] * 20000)
