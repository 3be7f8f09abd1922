package checkpoint

import (
	"strconv"
	"strings"
	"testing"
)

// TestHeaderNamesMustBeUTF8: a tensor name with bytes that are not UTF-8
// is refused with the byte's offset in the file, not renamed to U+FFFD.
func TestHeaderNamesMustBeUTF8(t *testing.T) {
	header := "{\"ok\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},\"b\xffd\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}"
	at := 8 + strings.Index(header, "\xff")
	_, err := parseHeader(&fuzzReader{t: t, b: stFile(header, 1, 2)}, int64(8+len(header)+2), "bad.safetensors")
	wantErr(t, err, "bad.safetensors", "not valid UTF-8", "0xff", "byte "+strconv.Itoa(at)+" of the file")

	// Elsewhere in the header (a metadata value) too.
	header = "{\"__metadata__\":{\"k\":\"v\xfe\"}}"
	at = 8 + strings.Index(header, "\xfe")
	_, err = parseHeader(&fuzzReader{t: t, b: stFile(header)}, int64(8+len(header)), "meta.safetensors")
	wantErr(t, err, "meta.safetensors", "not valid UTF-8", "byte "+strconv.Itoa(at)+" of the file")

	// The writer refuses such names instead of writing U+FFFD.
	_, err = Create(t.TempDir()+"/o.safetensors", []TensorSpec{{Name: "x\xc3", DType: F32, Shape: []int64{1}}}, WriteOptions{})
	wantErr(t, err, "not valid UTF-8", "byte 1 of the name")
}

// TestLongNamesShortenedInMessages: a megabyte-long name is not echoed
// whole.
func TestLongNamesShortenedInMessages(t *testing.T) {
	name := strings.Repeat("n", 1<<20)
	header := `{"` + name + `":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`
	_, err := parseHeader(&fuzzReader{t: t, b: stFile(header, 0, 0, 0, 0)}, int64(8+len(header)+4), "long.safetensors")
	wantErr(t, err, "long.safetensors", "a name of 1048576 bytes")
	if len(err.Error()) > 1000 {
		t.Errorf("message of %d bytes", len(err.Error()))
	}
	if q := QuoteName("é" + strings.Repeat("x", 300)); !strings.HasPrefix(q, `"é`) || !strings.HasSuffix(q, "… (a name of 302 bytes)") {
		t.Errorf("QuoteName = %s", q)
	}
	if q := QuoteName("short"); q != `"short"` {
		t.Errorf("QuoteName(short) = %s", q)
	}
}
