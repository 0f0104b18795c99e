package client

import "github.com/stratalog/strata/broker/wire"

// SetOnRequest makes p show each Produce request to f just before sending
// it. Call it before the first Send.
func SetOnRequest(p *Producer, f func(*wire.ProduceRequest)) { p.onRequest = f }
