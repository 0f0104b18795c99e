package raftfsm

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/prototext"

	stratav1 "github.com/stratalog/strata/proto/strata/v1"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of testdata files")

// The testdata files drive the state machine with recorded record streams.
// Format (like etcd raft's / cockroach's datadriven files):
//
//	# comment
//	<command> [args]
//	<input lines>
//	----
//	<expected output lines>
//	<blank line>
//
// Commands:
//
//	apply <offset>   input: one MetadataRecord per line in protobuf text format;
//	                 the lines form one batch. Output: "ok" or "error: ...".
//	dump             output: Image.Dump.
//	snapshot         round-trips the image through snapshot bytes and checks it
//	                 is identical; output: the snapshot's size.
//
// An input line {} is an empty MetadataRecord. In the input, $name stands for a 16-byte id made from name (topic ids,
// incarnation ids): the bytes of name, zero padded.
func TestDataDriven(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) { runDataDriven(t, f) })
	}
}

type ddCase struct {
	comments []string // the comment lines before the command
	cmd      string
	input    []string
	output   string
	line     int
}

func parseDataDriven(t *testing.T, path string) (cases []ddCase) {
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	var comments []string
	for i := 0; i < len(lines); {
		l := lines[i]
		if strings.TrimSpace(l) == "" {
			i++
			continue
		}
		if strings.HasPrefix(l, "#") {
			comments = append(comments, l)
			i++
			continue
		}
		c := ddCase{cmd: l, line: i + 1, comments: comments}
		comments = nil
		i++
		for i < len(lines) && lines[i] != "----" {
			c.input = append(c.input, lines[i])
			i++
		}
		if i == len(lines) {
			t.Fatalf("%s:%d: no ---- after command", path, c.line)
		}
		i++
		var out []string
		for i < len(lines) && lines[i] != "" {
			out = append(out, lines[i])
			i++
		}
		c.output = strings.Join(out, "\n")
		cases = append(cases, c)
	}
	return cases
}

var idRef = regexp.MustCompile(`\$([A-Za-z0-9_.-]+)`)

// testID is the 16-byte id the testdata's $name stands for.
func testID(name string) []byte {
	b := make([]byte, 16)
	copy(b, name)
	return b
}

func expandIDs(s string) string {
	return idRef.ReplaceAllStringFunc(s, func(m string) string {
		var sb strings.Builder
		sb.WriteByte('"')
		for _, c := range testID(m[1:]) {
			fmt.Fprintf(&sb, "\\%03o", c)
		}
		sb.WriteByte('"')
		return sb.String()
	})
}

func runDataDriven(t *testing.T, path string) {
	cases := parseDataDriven(t, path)
	img := NewImage()
	var got []string
	for _, c := range cases {
		fields := strings.Fields(c.cmd)
		var out string
		switch fields[0] {
		case "apply":
			if len(fields) != 2 {
				t.Fatalf("%s:%d: apply <offset>", path, c.line)
			}
			off, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				t.Fatalf("%s:%d: %v", path, c.line, err)
			}
			var recs []*stratav1.MetadataRecord
			for _, in := range c.input {
				r := &stratav1.MetadataRecord{}
				if in == "{}" {
					in = ""
				}
				if err := prototext.Unmarshal([]byte(expandIDs(in)), r); err != nil {
					t.Fatalf("%s:%d: %q: %v", path, c.line, in, err)
				}
				recs = append(recs, r)
			}
			before := img.String()
			next, err := ReplayRecords(img, off, recs)
			if img.String() != before {
				t.Fatalf("%s:%d: apply modified the old image", path, c.line)
			}
			img = next
			if err != nil {
				out = "error: " + err.Error()
			} else {
				out = "ok"
			}
		case "dump":
			out = strings.TrimRight(img.String(), "\n")
		case "snapshot":
			data, err := img.MarshalSnapshot()
			if err != nil {
				t.Fatal(err)
			}
			back, err := UnmarshalSnapshot(data)
			if err != nil {
				t.Fatalf("%s:%d: restore: %v", path, c.line, err)
			}
			if back.String() != img.String() {
				t.Fatalf("%s:%d: restored image differs:\n%s\nwant:\n%s", path, c.line, back, img)
			}
			again, _ := back.MarshalSnapshot()
			if string(again) != string(data) {
				t.Fatalf("%s:%d: snapshot of the restored image differs", path, c.line)
			}
			out = fmt.Sprintf("%d bytes", len(data))
		default:
			t.Fatalf("%s:%d: unknown command %q", path, c.line, fields[0])
		}
		if !*rewrite && out != c.output {
			t.Errorf("%s:%d: %s\ngot:\n%s\nwant:\n%s", path, c.line, c.cmd, out, c.output)
		}
		block := ""
		for _, cm := range c.comments {
			block += cm + "\n"
		}
		block += c.cmd + "\n"
		for _, in := range c.input {
			block += in + "\n"
		}
		got = append(got, block+"----\n"+out+"\n")
	}
	if *rewrite {
		text := strings.Join(got, "\n")
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
