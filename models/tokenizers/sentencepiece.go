package tokenizers

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"

	sentencepiece "github.com/eliben/go-sentencepiece"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/editkit/editkit/checkpoint"
)

// SentencePiece piece types (sentencepiece_model.proto).
const (
	spNormal      = 1
	spUnknown     = 2
	spControl     = 3
	spUserDefined = 4
	spUnused      = 5
	spByte        = 6
)

// SentencePiece is a SentencePiece BPE tokenizer read from a tokenizer.model
// (the ModelProto of google/sentencepiece), as LLaMA-1/2, Mistral and Gemma
// ship. Encoding runs github.com/eliben/go-sentencepiece, which implements
// SentencePiece's BPE merge loop, byte fallback and user-defined symbols but
// refuses models that ask for a dummy prefix or whitespace cleanup; this
// type reads those two normalizer options itself, hands the library a copy
// of the model with them switched off, and applies them around it:
// remove_extra_whitespaces strips leading and trailing spaces and collapses
// runs of spaces, add_dummy_prefix puts a space before non-empty text.
//
// Not supported, with an error at load time: model types other than BPE
// (unigram, word, char), normalization rules other than identity (a
// non-empty precompiled_charsmap: nmt_nfkc and the like), whitespace as
// suffix, and unescaped whitespace.
type SentencePiece struct {
	proc        *sentencepiece.Processor
	pieces      []spPiece
	bos, eos    int
	unk         int
	unkSurface  string
	dummyPrefix bool
	removeExtra bool
}

type spPiece struct {
	text  string
	score float32
	typ   int
}

// LoadSentencePiece reads a SentencePiece model file.
func LoadSentencePiece(path string) (*SentencePiece, error) {
	data, err := checkpoint.ReadSideFile(path)
	if err != nil {
		return nil, fmt.Errorf("sentencepiece tokenizer: %w", err)
	}
	t, err := ParseSentencePiece(data)
	if err != nil {
		return nil, fmt.Errorf("sentencepiece tokenizer %s: %w", path, err)
	}
	return t, nil
}

// spModel is what ParseSentencePiece reads of a ModelProto.
type spModel struct {
	pieces         []spPiece
	modelType      int64
	byteFallback   bool
	unk, bos, eos  int64
	unkSurface     string
	wsSuffix       bool
	normName       string
	charsmap       int
	addDummyPrefix bool
	removeExtraWS  bool
	escapeWS       bool
}

// ParseSentencePiece reads a SentencePiece model from the bytes of a
// tokenizer.model.
func ParseSentencePiece(data []byte) (*SentencePiece, error) {
	m, err := parseSPModel(data)
	if err != nil {
		return nil, fmt.Errorf("not a SentencePiece model: %w", err)
	}
	if len(m.pieces) == 0 {
		return nil, errors.New("not a SentencePiece model: it holds no pieces")
	}
	switch {
	case m.modelType != 2:
		names := map[int64]string{1: "unigram", 3: "word", 4: "char"}
		return nil, fmt.Errorf("model type %s is not supported (only BPE models are)", names[m.modelType])
	case m.charsmap > 0 && m.normName != "identity":
		return nil, fmt.Errorf("normalization rule %q is not supported (only identity; the model has a precompiled character map)", m.normName)
	case m.wsSuffix:
		return nil, errors.New("treat_whitespace_as_suffix is not supported")
	case !m.escapeWS:
		return nil, errors.New("escape_whitespaces=false is not supported")
	}
	patched := patchNormalizer(data)
	patched = appendSentinel(patched, m.pieces)
	proc, err := newProcessor(patched)
	if err != nil {
		return nil, err
	}
	id := func(v int64) int {
		if v < 0 || v >= int64(len(m.pieces)) {
			return -1
		}
		return int(v)
	}
	return &SentencePiece{
		proc: proc, pieces: m.pieces,
		bos: id(m.bos), eos: id(m.eos), unk: id(m.unk),
		unkSurface:  m.unkSurface,
		dummyPrefix: m.addDummyPrefix, removeExtra: m.removeExtraWS,
	}, nil
}

// newProcessor calls the library, turning a panic on malformed input into
// an error.
func newProcessor(model []byte) (p *sentencepiece.Processor, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("go-sentencepiece rejected the model: %v", r)
		}
	}()
	p, err = sentencepiece.NewProcessor(bytes.NewReader(model))
	if err != nil {
		return nil, fmt.Errorf("go-sentencepiece rejected the model: %w", err)
	}
	return p, nil
}

// parseSPModel walks the ModelProto's wire format for the fields used here.
func parseSPModel(data []byte) (*spModel, error) {
	m := &spModel{unk: 0, bos: 1, eos: 2, unkSurface: " \u2047 ", addDummyPrefix: true, removeExtraWS: true, escapeWS: true, modelType: 1}
	err := walkProto(data, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		switch num {
		case 1: // pieces
			p := spPiece{typ: spNormal}
			err := walkProto(v, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
				switch {
				case num == 1 && typ == protowire.BytesType:
					p.text = string(v)
				case num == 2 && typ == protowire.Fixed32Type:
					p.score = math.Float32frombits(uint32(x))
				case num == 3 && typ == protowire.VarintType:
					p.typ = int(x)
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("piece %d: %w", len(m.pieces), err)
			}
			m.pieces = append(m.pieces, p)
		case 2: // trainer_spec
			return walkProto(v, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
				switch {
				case typ == protowire.VarintType && num == 3:
					m.modelType = int64(x)
				case typ == protowire.VarintType && num == 24:
					m.wsSuffix = x != 0
				case typ == protowire.VarintType && num == 35:
					m.byteFallback = x != 0
				case typ == protowire.VarintType && num == 40:
					m.unk = int64(int32(x))
				case typ == protowire.VarintType && num == 41:
					m.bos = int64(int32(x))
				case typ == protowire.VarintType && num == 42:
					m.eos = int64(int32(x))
				case typ == protowire.BytesType && num == 44:
					m.unkSurface = string(v)
				}
				return nil
			})
		case 3: // normalizer_spec
			return walkProto(v, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
				switch {
				case typ == protowire.BytesType && num == 1:
					m.normName = string(v)
				case typ == protowire.BytesType && num == 2:
					m.charsmap = len(v)
				case typ == protowire.VarintType && num == 3:
					m.addDummyPrefix = x != 0
				case typ == protowire.VarintType && num == 4:
					m.removeExtraWS = x != 0
				case typ == protowire.VarintType && num == 5:
					m.escapeWS = x != 0
				}
				return nil
			})
		}
		return nil
	})
	return m, err
}

// walkProto calls fn for each field of a message: v holds a length-delimited
// field's bytes, x a varint or fixed field's value.
func walkProto(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v []byte
		var x uint64
		switch typ {
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var x32 uint32
			x32, n = protowire.ConsumeFixed32(b)
			x = uint64(x32)
		case protowire.Fixed64Type:
			x, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := fn(num, typ, v, x); err != nil {
			return err
		}
	}
	return nil
}

// patchNormalizer returns the model with normalizer_spec's add_dummy_prefix
// and remove_extra_whitespaces set to false (and a normalizer_spec added
// when there is none), which go-sentencepiece requires; the caller applies
// both options itself. Other fields are kept byte for byte.
func patchNormalizer(data []byte) []byte {
	out := make([]byte, 0, len(data)+16)
	found := false
	b := data
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		field := b[:n+m]
		b = b[n+m:]
		if num != 3 || typ != protowire.BytesType {
			out = append(out, field...)
			continue
		}
		found = true
		spec, _ := protowire.ConsumeBytes(field[n:])
		var patched []byte
		walkProto(spec, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
			if num == 3 || num == 4 {
				return nil
			}
			patched = protowire.AppendTag(patched, num, typ)
			switch typ {
			case protowire.VarintType:
				patched = protowire.AppendVarint(patched, x)
			case protowire.Fixed32Type:
				patched = protowire.AppendFixed32(patched, uint32(x))
			case protowire.Fixed64Type:
				patched = protowire.AppendFixed64(patched, x)
			case protowire.BytesType:
				patched = protowire.AppendBytes(patched, v)
			}
			return nil
		})
		out = appendNormalizer(out, patched)
	}
	if !found {
		out = appendNormalizer(out, nil)
	}
	return out
}

func appendNormalizer(out, spec []byte) []byte {
	spec = protowire.AppendTag(spec, 3, protowire.VarintType)
	spec = protowire.AppendVarint(spec, 0)
	spec = protowire.AppendTag(spec, 4, protowire.VarintType)
	spec = protowire.AppendVarint(spec, 0)
	out = protowire.AppendTag(out, 3, protowire.BytesType)
	return protowire.AppendBytes(out, spec)
}

// appendSentinel works around a bug of go-sentencepiece v0.6.0: its merge
// loop concatenates two symbols into a buffer as long as the longest piece,
// and panics when the two are longer (with tok512, " Lily" + "'s" ... and
// many other pairs). Symbols are pieces or single code points (or single
// bytes of invalid UTF-8), so a piece twice as long as the longest (and at
// least 8 bytes) makes room for any pair. The added piece is unused (type
// UNUSED, after every real id) and can never be formed: it is 0xFF bytes,
// and no shorter run of 0xFF bytes is a piece to build it from.
func appendSentinel(model []byte, pieces []spPiece) []byte {
	n := 4
	for _, p := range pieces {
		n = max(n, len(p.text))
	}
	var m []byte
	m = protowire.AppendTag(m, 1, protowire.BytesType)
	m = protowire.AppendBytes(m, bytes.Repeat([]byte{0xFF}, 2*n))
	m = protowire.AppendTag(m, 3, protowire.VarintType)
	m = protowire.AppendVarint(m, spUnused)
	model = protowire.AppendTag(model, 1, protowire.BytesType)
	return protowire.AppendBytes(model, m)
}

// VocabSize is the number of pieces.
func (t *SentencePiece) VocabSize() int { return len(t.pieces) }

// BOS is the model's bos_id, or -1.
func (t *SentencePiece) BOS() int { return t.bos }

// EOS is the model's eos_id, or -1.
func (t *SentencePiece) EOS() int { return t.eos }

// Piece returns the text of piece id as the model stores it ("▁" for
// spaces), or "" when out of range.
func (t *SentencePiece) Piece(id int) string {
	if id < 0 || id >= len(t.pieces) {
		return ""
	}
	return t.pieces[id].text
}

// Encode tokenizes text.
func (t *SentencePiece) Encode(text string, bos, eos bool) []int {
	var ids []int
	if bos && t.bos >= 0 {
		ids = append(ids, t.bos)
	}
	if t.removeExtra {
		text = strings.Join(strings.FieldsFunc(text, func(r rune) bool { return r == ' ' }), " ")
	}
	if text != "" {
		if t.dummyPrefix {
			text = " " + text
		}
		for _, tok := range t.proc.Encode(text) {
			ids = append(ids, tok.ID)
		}
	}
	if eos && t.eos >= 0 {
		ids = append(ids, t.eos)
	}
	return ids
}

// Decode returns the text of ids as SentencePiece's DecodeIds does: control
// pieces give nothing, unknown pieces the unk surface (" ⁇ "), byte pieces
// their bytes as UTF-8 (invalid sequences as U+FFFD), and when the model
// adds a dummy prefix or removes extra whitespace the first piece's leading
// "▁" is dropped. Ids out of range are skipped.
func (t *SentencePiece) Decode(ids []int) string {
	valid := make([]int, 0, len(ids))
	for _, id := range ids {
		if id >= 0 && id < len(t.pieces) {
			valid = append(valid, id)
		}
	}
	s := t.proc.Decode(valid)
	if t.dummyPrefix || t.removeExtra {
		for _, id := range valid {
			p := t.pieces[id]
			if p.typ == spControl {
				continue
			}
			if p.typ != spUnknown && p.typ != spByte && strings.HasPrefix(p.text, "▁") {
				s = strings.TrimPrefix(s, " ")
			}
			break
		}
	}
	return s
}

// DecodeToken returns the text of one token after prev: "" for a control
// piece, the unk surface for <unk>, a byte piece's byte, else the piece with
// "▁" as spaces, without its leading space after BOS.
func (t *SentencePiece) DecodeToken(prev, id int) string {
	if id < 0 || id >= len(t.pieces) {
		return ""
	}
	p := t.pieces[id]
	switch p.typ {
	case spControl:
		return ""
	case spUnknown:
		return t.unkSurface
	case spByte:
		if b, ok := parseByteToken(p.text); ok {
			return string([]byte{b})
		}
	}
	s := strings.ReplaceAll(p.text, "▁", " ")
	if prev == t.bos && prev >= 0 && strings.HasPrefix(s, " ") {
		s = s[1:]
	}
	return s
}
