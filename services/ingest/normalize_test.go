package ingest

import (
	"encoding/json"
	"testing"
)

func TestNormalizeDialects(t *testing.T) {
	t.Parallel()
	const ent = SchemaEnterprise
	cases := []struct {
		name string
		in   string
		want string // canonical JSON of the result; "" = error
	}{
		{"attribute names in any case", `{"UserName":"a","ACTIVE":true}`, `{"active":true,"userName":"a"}`},
		{"boolean as a string (Entra)", `{"userName":"a","active":"False"}`, `{"active":false,"userName":"a"}`},
		{"read-only and unknown attributes are dropped", `{"userName":"a","id":"x","meta":{},"groups":[{"value":"g"}],"foo":1,"password":"p"}`, `{"userName":"a"}`},
		{"manager as a bare id (Entra)", `{"userName":"a","` + ent + `":{"manager":"m1"}}`, `{"` + ent + `":{"manager":{"value":"m1"}},"userName":"a"}`},
		{"manager as a one-element array (Entra)", `{"userName":"a","` + ent + `":{"manager":[{"value":"m1"}]}}`, `{"` + ent + `":{"manager":{"value":"m1"}},"userName":"a"}`},
		{"flat extension key (Entra)", `{"userName":"a","` + ent + `:department":"D"}`, `{"` + ent + `":{"department":"D"},"userName":"a"}`},
		{"one e-mail object where a list is expected", `{"userName":"a","emails":{"value":"e"}}`, `{"emails":[{"value":"e"}],"userName":"a"}`},
		{"empty values are removed", `{"userName":"a","name":{},"emails":[],"` + SchemaDiscord + `":{"userId":""}}`, `{"userName":"a"}`},
		{"snowflake as a number is refused", `{"userName":"a","` + SchemaDiscord + `":{"userId":1100000000000001001}}`, ""},
		{"a boolean that is not one is refused", `{"userName":"a","active":"yes"}`, ""},
		{"a string attribute given an object is refused", `{"userName":{"x":1}}`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in, err := decodeObject([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			out, err := normalize(kindUser, in)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("accepted: %v", out)
				}
				mustBeClientError(t, err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(out)
			if string(got) != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}
