// The chat page (being written).
