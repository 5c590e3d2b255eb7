package chunk

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// Events as vLLM and OpenAI send them, and some they should not.
var events = []string{
	`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1738857600,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}`,
	`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1738857600,"model":"m","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"content":" Hello"},"logprobs":null,"finish_reason":null}],"usage":null}`,
	`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1738857600,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`,
	`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1738857600,"model":"m","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}`,
	`{"id":"c","choices":[{"index":0,"delta":{"content":"line\nbreak \"q\" \u00e9 \ud83d\ude00"}}],"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}`,
	`{"error":{"message":"out of memory","type":"InternalServerError","code":500}}`,
	`{"object":"error","message":"bad","error":null,"choices":null}`,
	`{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{"}}]}}]}`,
	`{"choices":[{"delta":{"content":"a"},"finish_reason":"length"},{"delta":{"content":"b"},"finish_reason":"stop"}]}`,
	" {\"created\" : 12 ,\n\"choices\":[ {\"delta\" :{\"content\":\"x\"} } ] }\r\n",
	`{"created":null,"choices":[{"delta":null,"finish_reason":null}]}`,
	`{"Created":5,"choices":[]}`,                             // another case: encoding/json's rules
	`{"created":1,"created":2}`,                              // a duplicate: the last wins
	`{"created":1.5}`,                                        // not an int64
	`{"created":"5"}`,                                        // nor is this
	`{"choices":[{"delta":{"content":7}}]}`,                  // content of the wrong type
	"{\"choices\":[{\"delta\":{\"content\":\"\xff\xfe\"}}]}", // invalid UTF-8
	`{"choices":{"delta":1}}`,
	`{"choices":[1,{"delta":{"content":"a"}}]}`,
	`{"a":[1,2,{"b":[true,false,null,-0.5e+3]}],"choices":[{"delta":{"content":"z"}}]}`,
	`null`,
	`[]`,
	`{"choices":[{"delta":{"content":"a"}}]`, // cut
	`{"choices":[{"delta":{"content":"a"}}]}x`,
	`{"a":01}`,
	`{"a":"\x01"}`,
	`{"a":"\q"}`,
	`{"a":1.}`,
	`{"a":tru}`,
	``,
	strings.Repeat("[", 600) + strings.Repeat("]", 600),
	`{"a":` + strings.Repeat("[", 600) + strings.Repeat("]", 600) + `}`,
	`{"service_tier":"default","choices":[{"index":1,"delta":{"content":"there"}}]}`,
	`{"choices":[{"delta":{"content":"Hi"},"index":0}]}`,
	`{"object":"text_completion","choices":[{"text":"Hel","index":0},{"index":1,"delta":{"tool_calls":[{"index":0,"function":{"name":"get_weather","arguments":"{\"a\":1}"}}]}}]}`,
}

func TestParseAgreesWithEncodingJSON(t *testing.T) {
	for _, ev := range events {
		agree(t, []byte(ev))
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		event string
		want  Chunk
	}{
		{events[0], Chunk{Created: 1738857600, NChoices: 1}},
		{events[1], Chunk{Created: 1738857600, SystemFingerprint: []byte(`"fp_1"`), NChoices: 1, Content: " Hello", Substantive: true, Counted: 1}},
		{events[2], Chunk{Created: 1738857600, NChoices: 1, Finish: []string{"stop"}, Substantive: true}},
		{events[3], Chunk{Created: 1738857600, Usage: []byte(`{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}`)}},
		{events[4], Chunk{NChoices: 1, Content: "line\nbreak \"q\" é 😀", Substantive: true, Counted: 1,
			Usage: []byte(`{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}`)}},
		{events[5], Chunk{Error: []byte(`{"message":"out of memory","type":"InternalServerError","code":500}`)}},
		{events[7], Chunk{NChoices: 1, Substantive: true, Counted: 1}},
		{events[8], Chunk{NChoices: 2, Content: "a", Finish: []string{"length", "stop"}, Substantive: true, Counted: 2}},
		{events[16], Chunk{NChoices: 1, Content: "\ufffd\ufffd", Substantive: true, Counted: 1}},
		// n choices interleaved: only choice 0's text is Content.
		{events[len(events)-3], Chunk{NChoices: 1, Substantive: true, Counted: 1, ServiceTier: []byte(`"default"`)}},
		{events[len(events)-2], Chunk{NChoices: 1, Content: "Hi", Substantive: true, Counted: 1}},
		// A legacy completion's text; a tool call's name and arguments.
		{events[len(events)-1], Chunk{NChoices: 2, Content: "Hel", Substantive: true, Counted: 1 + 5}},
	}
	for _, tt := range tests {
		var c Chunk
		if err := Parse([]byte(tt.event), &c); err != nil {
			t.Errorf("Parse(%s): %v", tt.event, err)
			continue
		}
		c.Choices = nil
		if !reflect.DeepEqual(c, tt.want) {
			t.Errorf("Parse(%s)\n got %+v\nwant %+v", tt.event, c, tt.want)
		}
	}
	for _, bad := range []string{`{"created":1.5}`, `{"choices":[`, `{"a":"\q"}`, ``, `{"a":1}x`} {
		var c Chunk
		if err := Parse([]byte(bad), &c); err == nil {
			t.Errorf("Parse(%s) = nil error, want encoding/json's", bad)
		}
	}
}

// TestFastPath checks that the events backends send take the one-pass
// walk, not the fallback.
func TestFastPath(t *testing.T) {
	for _, ev := range events[:11] {
		var c Chunk
		p := parser{b: []byte(ev)}
		if !p.chunk(&c) {
			t.Errorf("fell back to encoding/json: %s", ev)
		}
	}
}

func TestFields(t *testing.T) {
	var got []string
	ok := Fields([]byte(` {"id":"x", "n":[1,{"a":null}],"u":{"p":1}}
`), func(name, value []byte) bool {
		got = append(got, string(name)+"="+string(value))
		return true
	})
	want := []string{`id="x"`, `n=[1,{"a":null}]`, `u={"p":1}`}
	if !ok || !reflect.DeepEqual(got, want) {
		t.Errorf("Fields = %v, %q; want true, %q", ok, got, want)
	}
	for _, bad := range []string{`{"a":1}x`, `{"a":}`, `[1]`, `{"\u0061":1}`, ``} {
		if Fields([]byte(bad), func(_, _ []byte) bool { return true }) {
			t.Errorf("Fields(%s) = true", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, ev := range events {
		f.Add([]byte(ev))
	}
	f.Fuzz(func(t *testing.T, data []byte) { agree(t, data) })
}

// agree checks Parse against encoding/json on data.
func agree(t *testing.T, data []byte) {
	t.Helper()
	var got, want Chunk
	gotErr := Parse(data, &got)
	wantErr := slow(data, &want)
	if (gotErr == nil) != (wantErr == nil) {
		t.Fatalf("%q: Parse error %v, encoding/json's %v", data, gotErr, wantErr)
	}
	if gotErr != nil {
		return
	}
	if len(got.Finish) == 0 && len(want.Finish) == 0 {
		got.Finish, want.Finish = nil, nil
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\n Parse         %+v\n encoding/json %+v", data, got, want)
	}
	if got.Choices != nil && !json.Valid(got.Choices) {
		t.Fatalf("%q: choices %q are not valid JSON", data, got.Choices)
	}
}

func BenchmarkParse(b *testing.B) {
	ev := []byte(events[1])
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		var c Chunk
		for b.Loop() {
			if err := Parse(ev, &c); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		var c Chunk
		for b.Loop() {
			if err := slow(ev, &c); err != nil {
				b.Fatal(err)
			}
		}
	})
}
