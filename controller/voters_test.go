package controller

import (
	"errors"
	"reflect"
	"testing"
)

func TestParseQuorum(t *testing.T) {
	good := "1@127.0.0.1:9093, 2@127.0.0.1:9193,3@[::1]:9293"
	vs, err := ParseQuorum(good)
	if err != nil {
		t.Fatal(err)
	}
	want := []Voter{{1, "127.0.0.1:9093"}, {2, "127.0.0.1:9193"}, {3, "[::1]:9293"}}
	if !reflect.DeepEqual(vs, want) {
		t.Fatalf("got %v want %v", vs, want)
	}
	if got := FormatQuorum(vs); got != "1@127.0.0.1:9093,2@127.0.0.1:9193,3@[::1]:9293" {
		t.Fatalf("FormatQuorum = %q", got)
	}
	for _, tc := range []struct {
		in   string
		want error
	}{
		{"", ErrQuorumEmpty},
		{"  ", ErrQuorumEmpty},
		{"1@127.0.0.1:9093,", ErrQuorumEntry},
		{"127.0.0.1:9093", ErrQuorumEntry},
		{"@127.0.0.1:9093", ErrQuorumEntry},
		{"1@", ErrQuorumEntry},
		{"x@127.0.0.1:9093", ErrQuorumID},
		{"0@127.0.0.1:9093", ErrQuorumID},
		{"-1@127.0.0.1:9093", ErrQuorumID},
		{"99999999999@127.0.0.1:9093", ErrQuorumID},
		{"1@127.0.0.1", ErrQuorumAddr},
		{"1@:9093", ErrQuorumAddr},
		{"1@host:0", ErrQuorumAddr},
		{"1@host:70000", ErrQuorumAddr},
		{"1@host:http", ErrQuorumAddr},
		{"1@a:1,1@b:2", ErrQuorumDuplicateID},
		{"1@a:1,2@a:1", ErrQuorumDuplicateAd},
	} {
		_, err := ParseQuorum(tc.in)
		if !errors.Is(err, tc.want) {
			t.Errorf("ParseQuorum(%q) = %v, want %v", tc.in, err, tc.want)
		}
		var qe *QuorumError
		if !errors.As(err, &qe) {
			t.Errorf("ParseQuorum(%q): %T is not a *QuorumError", tc.in, err)
		}
	}
}

func TestServerID(t *testing.T) {
	if ServerID(42) != "42" {
		t.Fatal(ServerID(42))
	}
	if id, err := ParseServerID("42"); err != nil || id != 42 {
		t.Fatal(id, err)
	}
	if _, err := ParseServerID("x"); err == nil {
		t.Fatal("want error")
	}
}
