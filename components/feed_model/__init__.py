"""FeedModelBuilder: retrieval + seen-item removal + ranking composed into one SavedModel."""
