package controller

import (
	"context"
	"slices"
	"strconv"
	"strings"

	"github.com/stratalog/strata/raftfsm"

	pb "github.com/stratalog/strata/proto/strata/v1"
)

// DescribeConfigs answers from this node's image (any voter answers).
func (s *service) DescribeConfigs(ctx context.Context, req *pb.DescribeConfigsRequest) (*pb.DescribeConfigsResponse, error) {
	img := s.c.fsm.Image()
	resp := &pb.DescribeConfigsResponse{}
	for _, res := range req.GetResources() {
		r := &pb.DescribeConfigsResult{ResourceType: res.GetResourceType(), ResourceName: res.GetResourceName()}
		resp.Results = append(resp.Results, r)
		cfgs, err := describeConfigs(img, res)
		if err != nil {
			r.ErrorCode, r.ErrorMessage = itemError(err)
			continue
		}
		r.Configs = cfgs
	}
	return resp, nil
}

func describeConfigs(img *raftfsm.Image, res *pb.DescribeConfigsResource) ([]*pb.DescribedConfig, error) {
	var defs map[string]*configDef
	var value func(key string) (string, pb.ConfigSource)
	switch res.GetResourceType() {
	case pb.ConfigResourceType_CONFIG_RESOURCE_TYPE_TOPIC:
		tp := img.Topic(res.GetResourceName())
		if tp == nil {
			return nil, errorf(pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION, "no topic %q", res.GetResourceName())
		}
		defs = topicConfigs
		value = func(key string) (string, pb.ConfigSource) {
			v, src := effectiveConfig(img, tp, key)
			return v, protoSource(src)
		}
	case pb.ConfigResourceType_CONFIG_RESOURCE_TYPE_BROKER:
		name := res.GetResourceName()
		if err := validateBrokerResource(name); err != nil {
			return nil, err
		}
		defs = brokerConfigs
		value = func(key string) (string, pb.ConfigSource) {
			if name != "" {
				if v, ok := img.BrokerConfig(name, key); ok {
					return v, pb.ConfigSource_CONFIG_SOURCE_BROKER
				}
			}
			if v, ok := img.BrokerConfig("", key); ok {
				return v, pb.ConfigSource_CONFIG_SOURCE_CLUSTER_DEFAULT
			}
			return defs[key].def, pb.ConfigSource_CONFIG_SOURCE_DEFAULT
		}
	default:
		return nil, errorf(pb.ErrorCode_INVALID_REQUEST, "unknown resource type %v", res.GetResourceType())
	}
	keys := res.GetKeys()
	if len(keys) == 0 {
		keys = sortedKeys(defs)
	}
	var out []*pb.DescribedConfig
	for _, k := range keys {
		d := defs[k]
		if d == nil {
			return nil, errorf(pb.ErrorCode_INVALID_CONFIG, "unknown config key %q", k)
		}
		v, src := value(k)
		out = append(out, &pb.DescribedConfig{Key: k, Value: v, Source: src, Type: string(d.typ), Documentation: d.doc})
	}
	return out, nil
}

func protoSource(s configSource) pb.ConfigSource {
	switch s {
	case sourceTopic:
		return pb.ConfigSource_CONFIG_SOURCE_TOPIC
	case sourceBroker:
		return pb.ConfigSource_CONFIG_SOURCE_BROKER
	case sourceClusterDefault:
		return pb.ConfigSource_CONFIG_SOURCE_CLUSTER_DEFAULT
	}
	return pb.ConfigSource_CONFIG_SOURCE_DEFAULT
}

// validateBrokerResource: "" (the cluster-wide default) or a broker id.
func validateBrokerResource(name string) error {
	if name == "" {
		return nil
	}
	n, err := strconv.ParseInt(name, 10, 32)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != name {
		return errorf(pb.ErrorCode_INVALID_REQUEST, "broker resource %q is not \"\" or a broker id", name)
	}
	return nil
}

// AlterConfigs changes configs incrementally; each resource's changes are
// validated together and applied together or not at all.
func (s *service) AlterConfigs(ctx context.Context, req *pb.AlterConfigsRequest) (*pb.AlterConfigsResponse, error) {
	return wrap(s.c.alterConfigs(ctx, req))
}

func (c *Controller) alterConfigs(ctx context.Context, req *pb.AlterConfigsRequest) (*pb.AlterConfigsResponse, error) {
	resp := &pb.AlterConfigsResponse{}
	err := c.submit(ctx, func(_ *activeState, t *txn) error {
		resp.Results = resp.Results[:0]
		start, n := t.mark()
		for _, res := range req.GetResources() {
			r := &pb.AlterConfigsResult{ResourceType: res.GetResourceType(), ResourceName: res.GetResourceName()}
			resp.Results = append(resp.Results, r)
			r.ErrorCode, r.ErrorMessage = itemError(t.item(func() error { return decideAlterConfigs(t, res) }))
		}
		if req.GetValidateOnly() {
			t.rollback(start, n)
		}
		return nil
	}, nil)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// decideAlterConfigs validates every op of res, then adds one ConfigRecord
// per op.
func decideAlterConfigs(t *txn, res *pb.AlterConfigsResource) error {
	var defs map[string]*configDef
	var current func(key string) string
	switch res.GetResourceType() {
	case pb.ConfigResourceType_CONFIG_RESOURCE_TYPE_TOPIC:
		tp := t.img.Topic(res.GetResourceName())
		if tp == nil {
			return errorf(pb.ErrorCode_UNKNOWN_TOPIC_OR_PARTITION, "no topic %q", res.GetResourceName())
		}
		defs = topicConfigs
		current = func(key string) string { v, _ := effectiveConfig(t.img, tp, key); return v }
	case pb.ConfigResourceType_CONFIG_RESOURCE_TYPE_BROKER:
		name := res.GetResourceName()
		if err := validateBrokerResource(name); err != nil {
			return err
		}
		defs = brokerConfigs
		current = func(key string) string {
			if v, ok := t.img.BrokerConfig(name, key); ok {
				return v
			}
			if v, ok := t.img.BrokerConfig("", key); ok {
				return v
			}
			return defs[key].def
		}
	default:
		return errorf(pb.ErrorCode_INVALID_REQUEST, "unknown resource type %v", res.GetResourceType())
	}
	if len(res.GetConfigs()) == 0 {
		return errorf(pb.ErrorCode_INVALID_REQUEST, "no config changes")
	}
	var recs []*pb.ConfigRecord
	var keys []string
	for _, ac := range res.GetConfigs() {
		k := ac.GetKey()
		d := defs[k]
		if d == nil {
			return errorf(pb.ErrorCode_INVALID_CONFIG, "unknown config key %q", k)
		}
		if slices.Contains(keys, k) {
			return errorf(pb.ErrorCode_INVALID_REQUEST, "config key %q changed twice", k)
		}
		keys = append(keys, k)
		rec := &pb.ConfigRecord{ResourceType: res.GetResourceType(), ResourceName: res.GetResourceName(), Key: k}
		switch ac.GetOp() {
		case pb.AlterConfigOp_ALTER_CONFIG_OP_SET:
			rec.Value = ac.GetValue()
		case pb.AlterConfigOp_ALTER_CONFIG_OP_DELETE:
			rec.Delete = true
		case pb.AlterConfigOp_ALTER_CONFIG_OP_APPEND, pb.AlterConfigOp_ALTER_CONFIG_OP_SUBTRACT:
			if d.typ != typeList {
				return errorf(pb.ErrorCode_INVALID_CONFIG, "%s is a %s, not a list: APPEND and SUBTRACT do not apply", k, d.typ)
			}
			items := splitList(current(k))
			for _, v := range splitList(ac.GetValue()) {
				if ac.GetOp() == pb.AlterConfigOp_ALTER_CONFIG_OP_APPEND {
					if !slices.Contains(items, v) {
						items = append(items, v)
					}
				} else {
					items = slices.DeleteFunc(items, func(x string) bool { return x == v })
				}
			}
			rec.Value = strings.Join(items, ",")
		default:
			return errorf(pb.ErrorCode_INVALID_REQUEST, "unknown config op %v", ac.GetOp())
		}
		if !rec.Delete {
			if err := d.validate(rec.Value); err != nil {
				return errorf(pb.ErrorCode_INVALID_CONFIG, "%v", err)
			}
		}
		recs = append(recs, rec)
	}
	for _, rec := range recs {
		if err := t.add(&pb.MetadataRecord{Record: &pb.MetadataRecord_Config{Config: rec}}); err != nil {
			return err
		}
	}
	return nil
}
