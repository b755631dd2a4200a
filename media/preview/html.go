package preview

import (
	"errors"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
	"golang.org/x/net/html/charset"
)

// ogProperties are the OpenGraph properties a preview passes on; a page's
// other og: tags (video, audio, locale alternates...) are left out.
var ogProperties = map[string]bool{
	"og:title": true, "og:description": true, "og:site_name": true, "og:type": true, "og:url": true,
	"og:image": true, "og:image:width": true, "og:image:height": true, "og:image:alt": true,
}

// Text longer than these is cut, as Synapse cuts descriptions at 500:
// a preview is a glance, and the client stores it.
const (
	maxTitle       = 300
	maxDescription = 500
)

// parseHTML reads a page's OpenGraph properties, falling back to <title>
// and <meta name="description"> for og:title and og:description. The
// first value of a property wins (og:image may repeat; the first is the
// page's main image). contentType gives the charset when the page does
// not declare one itself.
func parseHTML(r io.Reader, contentType string) (map[string]any, error) {
	r, err := charset.NewReader(r, contentType)
	if err != nil {
		return nil, err
	}
	og := map[string]any{}
	var title, description string
	z := html.NewTokenizer(r)
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			if err := z.Err(); !errors.Is(err, io.EOF) {
				return nil, err
			}
			if _, ok := og["og:title"]; !ok && title != "" {
				og["og:title"] = title
			}
			if _, ok := og["og:description"]; !ok && description != "" {
				og["og:description"] = description
			}
			return og, nil
		case html.StartTagToken, html.SelfClosingTagToken:
			name, hasAttr := z.TagName()
			switch atom.Lookup(name) {
			case atom.Title:
				// The tokenizer reads a <title>'s content as one text token.
				if title == "" && tt == html.StartTagToken && z.Next() == html.TextToken {
					title = clean(string(z.Text()), maxTitle)
				}
			case atom.Meta:
				if hasAttr {
					meta(z, og, &description)
				}
			}
		}
	}
}

// meta reads one <meta> tag's attributes into og.
func meta(z *html.Tokenizer, og map[string]any, description *string) {
	var property, name, content string
	hasContent := false
	for {
		k, v, more := z.TagAttr()
		switch string(k) {
		case "property":
			property = strings.ToLower(strings.TrimSpace(string(v)))
		case "name":
			name = strings.ToLower(strings.TrimSpace(string(v)))
		case "content":
			content, hasContent = string(v), true
		}
		if !more {
			break
		}
	}
	if !hasContent {
		return
	}
	// Some sites put OpenGraph properties in name= rather than property=.
	if property == "" && strings.HasPrefix(name, "og:") {
		property = name
	}
	switch {
	case ogProperties[property]:
		if _, seen := og[property]; seen {
			return
		}
		switch property {
		case "og:image:width", "og:image:height":
			if n, err := strconv.Atoi(strings.TrimSpace(content)); err == nil && n > 0 {
				og[property] = n
			}
		case "og:title", "og:site_name", "og:image:alt":
			if c := clean(content, maxTitle); c != "" {
				og[property] = c
			}
		case "og:description":
			if c := clean(content, maxDescription); c != "" {
				og[property] = c
			}
		default: // og:type, og:url, og:image: one token, not prose
			if c := strings.TrimSpace(content); c != "" && len(c) <= 2048 {
				og[property] = c
			}
		}
	case name == "description" && *description == "":
		*description = clean(content, maxDescription)
	}
}

// clean collapses whitespace runs (pages indent their text) and cuts s to
// at most max characters, ending an over-long text with "…".
func clean(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	runes := []rune(s)
	return strings.TrimSpace(string(runes[:max-1])) + "…"
}
