package client

import (
	"context"
	"strconv"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// ResourceType says what a config applies to.
type ResourceType int8

const (
	// ResourceTopic: Name is the topic.
	ResourceTopic ResourceType = iota + 1
	// ResourceBroker: Name is the broker id in decimal, or "" for the
	// cluster-wide default.
	ResourceBroker
)

func (t ResourceType) String() string {
	switch t {
	case ResourceTopic:
		return "topic"
	case ResourceBroker:
		return "broker"
	}
	return "ResourceType(" + strconv.Itoa(int(t)) + ")"
}

func (t ResourceType) proto() pb.ConfigResourceType {
	switch t {
	case ResourceTopic:
		return pb.ConfigResourceType_CONFIG_RESOURCE_TYPE_TOPIC
	case ResourceBroker:
		return pb.ConfigResourceType_CONFIG_RESOURCE_TYPE_BROKER
	}
	return pb.ConfigResourceType_CONFIG_RESOURCE_TYPE_UNSPECIFIED
}

func resourceTypeOf(t pb.ConfigResourceType) ResourceType {
	switch t {
	case pb.ConfigResourceType_CONFIG_RESOURCE_TYPE_TOPIC:
		return ResourceTopic
	case pb.ConfigResourceType_CONFIG_RESOURCE_TYPE_BROKER:
		return ResourceBroker
	}
	return 0
}

// ConfigResource names a topic or a broker.
type ConfigResource struct {
	Type ResourceType
	Name string
}

// TopicResource is the config resource of a topic.
func TopicResource(name string) ConfigResource {
	return ConfigResource{Type: ResourceTopic, Name: name}
}

// BrokerResource is the config resource of a broker.
func BrokerResource(id int32) ConfigResource {
	return ConfigResource{Type: ResourceBroker, Name: strconv.Itoa(int(id))}
}

// ClusterBrokerDefaults is the resource of the cluster-wide broker defaults.
var ClusterBrokerDefaults = ConfigResource{Type: ResourceBroker}

// ConfigEntry is one config key's effective value.
type ConfigEntry struct {
	Key   string
	Value string
	// Source is where the value comes from: "default", "topic", "broker"
	// or "cluster-default".
	Source    string
	ReadOnly  bool
	Sensitive bool
	Type      string // "int", "long", "boolean", "string", "double", "list", ...
	Doc       string
}

// ResourceConfigs is the answer of DescribeConfigs for one resource.
type ResourceConfigs struct {
	Resource ConfigResource
	Configs  []ConfigEntry // sorted by key
	Err      error
}

func sourceName(s pb.ConfigSource) string {
	switch s {
	case pb.ConfigSource_CONFIG_SOURCE_TOPIC:
		return "topic"
	case pb.ConfigSource_CONFIG_SOURCE_BROKER:
		return "broker"
	case pb.ConfigSource_CONFIG_SOURCE_CLUSTER_DEFAULT:
		return "cluster-default"
	}
	return "default"
}

// DescribeConfigs describes the configs of resources: the keys given, or
// every key when none is.
func (a *Admin) DescribeConfigs(ctx context.Context, resources []ConfigResource, keys ...string) ([]ResourceConfigs, error) {
	if len(resources) == 0 {
		return nil, invalid("no resources to describe")
	}
	req := &pb.DescribeConfigsRequest{}
	for _, r := range resources {
		if r.Type.proto() == pb.ConfigResourceType_CONFIG_RESOURCE_TYPE_UNSPECIFIED {
			return nil, invalid("resource %q has no type (want ResourceTopic or ResourceBroker)", r.Name)
		}
		req.Resources = append(req.Resources, &pb.DescribeConfigsResource{ResourceType: r.Type.proto(), ResourceName: r.Name, Keys: keys})
	}
	resp, err := callController(ctx, a, pb.ControllerServiceClient.DescribeConfigs, req)
	if err != nil {
		return nil, err
	}
	out := make([]ResourceConfigs, 0, len(resp.Results))
	for _, r := range resp.Results {
		rc := ResourceConfigs{Resource: ConfigResource{Type: resourceTypeOf(r.ResourceType), Name: r.ResourceName},
			Err: itemError(r.ErrorCode, r.ErrorMessage)}
		for _, c := range r.Configs {
			rc.Configs = append(rc.Configs, ConfigEntry{Key: c.Key, Value: c.Value, Source: sourceName(c.Source),
				ReadOnly: c.ReadOnly, Sensitive: c.Sensitive, Type: c.Type, Doc: c.Documentation})
		}
		out = append(out, rc)
	}
	return out, nil
}

// ConfigOpType is an incremental config change.
type ConfigOpType int8

const (
	// ConfigSet sets the key to Value.
	ConfigSet ConfigOpType = iota
	// ConfigDelete removes the override: the key falls back to its default.
	ConfigDelete
	// ConfigAppend adds Value to a list key.
	ConfigAppend
	// ConfigSubtract removes Value from a list key.
	ConfigSubtract
)

// ConfigOp changes one key.
type ConfigOp struct {
	Key   string
	Op    ConfigOpType
	Value string
}

// ConfigChange is a set of changes to one resource, applied together or
// not at all.
type ConfigChange struct {
	Resource ConfigResource
	Ops      []ConfigOp
}

// AlterConfigsOptions tune AlterConfigs.
type AlterConfigsOptions struct {
	ValidateOnly bool
}

// ConfigResult is the outcome of AlterConfigs for one resource.
type ConfigResult struct {
	Resource ConfigResource
	Err      error // INVALID_CONFIG for an unknown key or a bad value
}

// AlterConfigs changes configs incrementally (Kafka's
// IncrementalAlterConfigs). Each resource's ops are validated together and
// applied together or not at all.
func (a *Admin) AlterConfigs(ctx context.Context, changes []ConfigChange, opts AlterConfigsOptions) ([]ConfigResult, error) {
	if len(changes) == 0 {
		return nil, invalid("no config changes")
	}
	req := &pb.AlterConfigsRequest{ValidateOnly: opts.ValidateOnly}
	for _, ch := range changes {
		if ch.Resource.Type.proto() == pb.ConfigResourceType_CONFIG_RESOURCE_TYPE_UNSPECIFIED {
			return nil, invalid("resource %q has no type (want ResourceTopic or ResourceBroker)", ch.Resource.Name)
		}
		if len(ch.Ops) == 0 {
			return nil, invalid("no config ops for %s %q", ch.Resource.Type, ch.Resource.Name)
		}
		r := &pb.AlterConfigsResource{ResourceType: ch.Resource.Type.proto(), ResourceName: ch.Resource.Name}
		for _, op := range ch.Ops {
			var o pb.AlterConfigOp
			switch op.Op {
			case ConfigSet:
				o = pb.AlterConfigOp_ALTER_CONFIG_OP_SET
			case ConfigDelete:
				o = pb.AlterConfigOp_ALTER_CONFIG_OP_DELETE
			case ConfigAppend:
				o = pb.AlterConfigOp_ALTER_CONFIG_OP_APPEND
			case ConfigSubtract:
				o = pb.AlterConfigOp_ALTER_CONFIG_OP_SUBTRACT
			default:
				return nil, invalid("config op %d on %q: want ConfigSet, ConfigDelete, ConfigAppend or ConfigSubtract", op.Op, op.Key)
			}
			r.Configs = append(r.Configs, &pb.AlterableConfig{Key: op.Key, Op: o, Value: op.Value})
		}
		req.Resources = append(req.Resources, r)
	}
	resp, err := callController(ctx, a, pb.ControllerServiceClient.AlterConfigs, req)
	if err != nil {
		return nil, err
	}
	out := make([]ConfigResult, 0, len(resp.Results))
	for _, r := range resp.Results {
		out = append(out, ConfigResult{Resource: ConfigResource{Type: resourceTypeOf(r.ResourceType), Name: r.ResourceName},
			Err: itemError(r.ErrorCode, r.ErrorMessage)})
	}
	return out, nil
}
