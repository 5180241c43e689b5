// Placeholder until the ws-rpc browser client is written here.
