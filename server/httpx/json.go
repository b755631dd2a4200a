package httpx

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode/utf8"

	"hearth/server/mxerr"
)

// MaxJSONDepth bounds the nesting of request bodies; deeper bodies are
// refused before decoding so a hostile client cannot make the decoder recurse.
const MaxJSONDepth = 64

// DecodeJSON decodes a request body into v, which must be a pointer to a
// struct or map. An empty body counts as {} (clients send none to many POST
// endpoints). Errors are the spec's: M_NOT_JSON for bytes that are not a
// JSON object, M_BAD_JSON for a wrong shape or type.
func DecodeJSON(body []byte, v any) error {
	body = bytes.Trim(body, " \t\r\n") // JSON whitespace only
	if len(body) == 0 {
		body = []byte("{}")
	}
	// Go's decoder would quietly turn invalid UTF-8 into U+FFFD; JSON must
	// be UTF-8 (RFC 8259 §8.1), and clients are told so.
	if !utf8.Valid(body) || !json.Valid(body) {
		return mxerr.NotJSON("Content not JSON")
	}
	if body[0] != '{' {
		return mxerr.BadJSON("Content must be a JSON object")
	}
	if jsonDepth(body) > MaxJSONDepth {
		return mxerr.BadJSON("JSON nested deeper than %d levels", MaxJSONDepth)
	}
	if err := json.Unmarshal(body, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return mxerr.BadJSON("Field %q must be of type %s", te.Field, jsonKind(te.Type.Kind().String()))
		}
		return mxerr.BadJSON("Malformed request body")
	}
	return nil
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "bool":
		return "boolean"
	case "struct", "map":
		return "object"
	case "slice", "array":
		return "array"
	default:
		return "number"
	}
}

// jsonDepth returns the deepest nesting of objects and arrays in valid JSON.
func jsonDepth(b []byte) int {
	depth, deepest, inString := 0, 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inString:
			if c == '\\' {
				i++
			} else if c == '"' {
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
			deepest = max(deepest, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest
}
