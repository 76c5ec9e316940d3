package example

// The names that tie the server and its clients together. Written by hand,
// not generated: `make proto` leaves this file alone.
const (
	// ServiceName is the name the server registers under unless
	// --server_name says otherwise, and the name the clients call unless
	// --service does.
	ServiceName = "poc.example"

	// EventsTopic is the topic whose example.Message events the server
	// subscribes to, and client-azqueue-pub publishes to, unless --topic
	// says otherwise.
	EventsTopic = "example.events"
)
