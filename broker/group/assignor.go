package group

// An Assignor computes a group's target assignment on the coordinator
// (KIP-848 server-side assignment). It is a pure function of its input:
// the coordinator runs it whenever the group epoch moves (a member joins,
// leaves or changes its subscription, or a subscribed topic gains
// partitions) and then hands each member its target incrementally.
type Assignor interface {
	// Name is what members ask for in GroupHeartbeat.server_assignor.
	Name() string
	// Assign answers every member of spec, each with the partitions it
	// should own. Each partition of a topic some member subscribes to goes to
	// exactly one member that subscribes to it; partitions of topics nobody
	// subscribes to are left out.
	Assign(spec AssignmentSpec) Assignment
}

// AssignmentSpec is an assignor's input.
type AssignmentSpec struct {
	// Members by member id.
	Members map[string]MemberSpec
	// Topics maps each topic some member subscribes to (and that exists) to
	// its partition count.
	Topics map[string]int32
}

// MemberSpec is one member as the assignor sees it.
type MemberSpec struct {
	InstanceID string
	Rack       string
	// Topics the member subscribes to, resolved (a regex already matched
	// against the topic names), sorted; only topics present in
	// AssignmentSpec.Topics.
	Topics []string
	// Current is the member's previous target assignment (topic ->
	// partitions), which a sticky assignor keeps where it can.
	Current map[string][]int32
}

// Assignment maps member id -> topic -> sorted partitions. Every member of
// the spec has an entry, possibly empty.
type Assignment map[string]map[string][]int32

// Assignor names.
const (
	UniformAssignor = "uniform"
	RangeAssignor   = "range"
)
