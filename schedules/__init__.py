"""Schedule templates per operator and target, and shipped tuned records."""
