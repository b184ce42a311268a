package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"entgo.io/ent/dialect/sql"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantry/tenantry/examples/app/ent"
	"github.com/tenantry/tenantry/examples/app/ent/customer"
	"github.com/tenantry/tenantry/examples/app/ent/lineitem"
	"github.com/tenantry/tenantry/examples/app/ent/order"
	"github.com/tenantry/tenantry/examples/app/ent/ordertag"
	"github.com/tenantry/tenantry/examples/app/ent/predicate"
	"github.com/tenantry/tenantry/examples/app/ent/tag"
)

// Limits of the API.
const (
	DefaultPageSize = 50
	MaxPageSize     = 200
	MaxBodyBytes    = 1 << 20
	MaxLineItems    = 500
	MaxQuantity     = 1_000_000
	MaxUnitPrice    = 1_000_000_000_00 // one billion in cents
	MaxNoteBytes    = 4000
)

// API serves the endpoints of one app over a generated client.
type API struct {
	Client *ent.Client
	Log    *slog.Logger // errors of 5xx answers; nil: slog.Default()
}

// Route is one endpoint.
type Route struct {
	Method  string
	Pattern string // net/http ServeMux pattern path, e.g. /v1/orders/{id}
	Name    string
	handle  func(w http.ResponseWriter, r *http.Request) error
}

// Routes returns every endpoint of the API.
func (a *API) Routes() []Route {
	return []Route{
		{"GET", "/v1/customers", "list customers", a.listCustomers},
		{"POST", "/v1/customers", "create customer", a.createCustomer},
		{"GET", "/v1/customers/{id}", "get customer", a.getCustomer},
		{"PATCH", "/v1/customers/{id}", "update customer", a.updateCustomer},
		{"DELETE", "/v1/customers/{id}", "delete customer", a.deleteCustomer},
		{"GET", "/v1/customers/{id}/orders", "list a customer's orders", a.listCustomerOrders},

		{"GET", "/v1/orders", "list orders", a.listOrders},
		{"POST", "/v1/orders", "create order with line items", a.createOrder},
		{"GET", "/v1/orders/{id}", "get order with line items and tags", a.getOrder},
		{"PATCH", "/v1/orders/{id}", "update order", a.updateOrder},
		{"DELETE", "/v1/orders/{id}", "delete order", a.deleteOrder},
		{"POST", "/v1/orders/{id}/line_items", "add line item", a.addLineItem},
		{"DELETE", "/v1/orders/{id}/line_items/{item}", "remove line item", a.removeLineItem},
		{"PUT", "/v1/orders/{id}/tags/{tag}", "tag order", a.tagOrder},
		{"DELETE", "/v1/orders/{id}/tags/{tag}", "untag order", a.untagOrder},

		{"GET", "/v1/tags", "list tags", a.listTags},
		{"POST", "/v1/tags", "create tag", a.createTag},
		{"GET", "/v1/tags/{id}", "get tag", a.getTag},
		{"PATCH", "/v1/tags/{id}", "rename tag", a.updateTag},
		{"DELETE", "/v1/tags/{id}", "delete tag", a.deleteTag},
		{"GET", "/v1/tags/{id}/orders", "list a tag's orders", a.listTagOrders},
	}
}

// Mux returns a ServeMux with every route. It expects requests whose
// context the auth middleware scoped to a tenant.
func (a *API) Mux() *http.ServeMux {
	mux := http.NewServeMux()
	for _, rt := range a.Routes() {
		mux.Handle(rt.Method+" "+rt.Pattern, a.handler(rt.handle))
	}
	return mux
}

func (a *API) log() *slog.Logger {
	if a.Log != nil {
		return a.Log
	}
	return slog.Default()
}

func (a *API) handler(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			WriteError(w, r, a.log(), err)
		}
	})
}

// ----- request helpers

func pathID(r *http.Request, name string) (uuid.UUID, error) {
	s := r.PathValue(name)
	if len(s) != 36 {
		return uuid.UUID{}, badInput("bad_id", "%s must be a UUID", name)
	}
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.UUID{}, badInput("bad_id", "%s must be a UUID", name)
	}
	return id, nil
}

// decode reads one JSON object into v, refusing unknown fields, trailing
// data and bodies over MaxBodyBytes.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	body := http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		if errors.Is(err, io.EOF) {
			return badInput("bad_json", "request body must be a JSON object")
		}
		return badInput("bad_json", "malformed JSON body: %s", jsonProblem(err))
	}
	if dec.More() {
		return badInput("bad_json", "request body must hold one JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return badInput("bad_json", "request body must hold one JSON object")
	}
	return nil
}

// jsonProblem describes a decoding error without echoing the input.
func jsonProblem(err error) string {
	var (
		se *json.SyntaxError
		te *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &se):
		return "syntax error at byte " + strconv.FormatInt(se.Offset, 10)
	case errors.As(err, &te):
		return "field " + strconv.Quote(te.Field) + " has the wrong type"
	}
	msg := err.Error()
	if len(msg) > 120 {
		msg = msg[:120]
	}
	return msg
}

type page struct {
	limit int
	after *uuid.UUID
}

func pageOf(r *http.Request) (page, error) {
	q := r.URL.Query()
	p := page{limit: DefaultPageSize}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxPageSize {
			return page{}, badInput("bad_limit", "limit must be 1..%d", MaxPageSize)
		}
		p.limit = n
	}
	if s := q.Get("after"); s != "" {
		id, err := uuid.Parse(s)
		if err != nil || len(s) != 36 {
			return page{}, badInput("bad_cursor", "after must be the next cursor of a previous page")
		}
		p.after = &id
	}
	return p, nil
}

// List is a page of items. Next, when set, is the after= of the next page.
type List[T any] struct {
	Items []T        `json:"items"`
	Next  *uuid.UUID `json:"next,omitempty"`
}

func listOf[E any, T any](rows []E, limit int, id func(E) uuid.UUID, view func(E) T) List[T] {
	out := List[T]{Items: make([]T, 0, min(len(rows), limit))}
	for i, e := range rows {
		if i == limit {
			next := id(rows[limit-1])
			out.Next = &next
			break
		}
		out.Items = append(out.Items, view(e))
	}
	return out
}

// inTx runs f in a transaction of the request's tenant.
func (a *API) inTx(ctx context.Context, f func(tx *ent.Tx) error) error {
	tx, err := a.Client.Tx(ctx)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		if rerr := tx.Rollback(); rerr != nil {
			a.log().WarnContext(ctx, "rollback failed", "error", rerr.Error())
		}
		return err
	}
	return tx.Commit()
}

// ----- views

// Customer is the JSON form of a customer.
type Customer struct {
	ID        uuid.UUID `json:"id"`
	Name      string    `json:"name"`
	Email     string    `json:"email"`
	CreatedAt time.Time `json:"created_at"`
}

func customerView(c *ent.Customer) Customer {
	return Customer{ID: c.ID, Name: c.Name, Email: c.Email, CreatedAt: c.CreatedAt}
}

// Order is the JSON form of an order.
type Order struct {
	ID         uuid.UUID  `json:"id"`
	Number     string     `json:"number"`
	Status     string     `json:"status"`
	TotalCents int64      `json:"total_cents"`
	Note       string     `json:"note,omitempty"`
	CustomerID *uuid.UUID `json:"customer_id,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	LineItems  []LineItem `json:"line_items,omitempty"`
	Tags       []Tag      `json:"tags,omitempty"`
}

func orderView(o *ent.Order) Order {
	v := Order{ID: o.ID, Number: o.Number, Status: string(o.Status), TotalCents: o.TotalCents, Note: o.Note, CreatedAt: o.CreatedAt}
	if o.CustomerID != uuid.Nil {
		id := o.CustomerID
		v.CustomerID = &id
	}
	for _, li := range o.Edges.LineItems {
		v.LineItems = append(v.LineItems, lineItemView(li))
	}
	for _, t := range o.Edges.Tags {
		v.Tags = append(v.Tags, tagView(t))
	}
	return v
}

// LineItem is the JSON form of a line item.
type LineItem struct {
	ID             uuid.UUID `json:"id"`
	SKU            string    `json:"sku"`
	Quantity       int       `json:"quantity"`
	UnitPriceCents int64     `json:"unit_price_cents"`
}

func lineItemView(li *ent.LineItem) LineItem {
	return LineItem{ID: li.ID, SKU: li.Sku, Quantity: li.Quantity, UnitPriceCents: li.UnitPriceCents}
}

// Tag is the JSON form of a tag.
type Tag struct {
	ID   uuid.UUID `json:"id"`
	Name string    `json:"name"`
}

func tagView(t *ent.Tag) Tag { return Tag{ID: t.ID, Name: t.Name} }

func customerID(c *ent.Customer) uuid.UUID { return c.ID }
func orderID(o *ent.Order) uuid.UUID       { return o.ID }
func tagID(t *ent.Tag) uuid.UUID           { return t.ID }

// ----- customers

type customerInput struct {
	Name  *string `json:"name"`
	Email *string `json:"email"`
}

func (a *API) listCustomers(w http.ResponseWriter, r *http.Request) error {
	p, err := pageOf(r)
	if err != nil {
		return err
	}
	q := a.Client.Customer.Query().Order(ent.Asc(customer.FieldID)).Limit(p.limit + 1)
	if p.after != nil {
		q.Where(customer.IDGT(*p.after))
	}
	rows, err := q.All(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, listOf(rows, p.limit, customerID, customerView))
	return nil
}

func (a *API) createCustomer(w http.ResponseWriter, r *http.Request) error {
	var in customerInput
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if in.Name == nil || in.Email == nil {
		return badInput("missing_field", "name and email are required")
	}
	c, err := a.Client.Customer.Create().SetName(*in.Name).SetEmail(*in.Email).Save(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, customerView(c))
	return nil
}

func (a *API) getCustomer(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	c, err := a.Client.Customer.Get(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, customerView(c))
	return nil
}

func (a *API) updateCustomer(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	var in customerInput
	if err := decode(w, r, &in); err != nil {
		return err
	}
	c, err := a.Client.Customer.UpdateOneID(id).SetNillableName(in.Name).SetNillableEmail(in.Email).Save(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, customerView(c))
	return nil
}

func (a *API) deleteCustomer(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	// The customer's orders stay, without a customer.
	err = a.inTx(r.Context(), func(tx *ent.Tx) error {
		if err := tx.Order.Update().Where(order.CustomerID(id)).ClearCustomerID().Exec(r.Context()); err != nil {
			return err
		}
		return tx.Customer.DeleteOneID(id).Exec(r.Context())
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusNoContent, nil)
	return nil
}

func (a *API) listCustomerOrders(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	p, err := pageOf(r)
	if err != nil {
		return err
	}
	if ok, err := a.Client.Customer.Query().Where(customer.ID(id)).Exist(r.Context()); err != nil {
		return err
	} else if !ok {
		return ErrNotFound
	}
	q := a.Client.Order.Query().Where(order.CustomerID(id)).Order(ent.Asc(order.FieldID)).Limit(p.limit + 1)
	if p.after != nil {
		q.Where(order.IDGT(*p.after))
	}
	rows, err := q.All(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, listOf(rows, p.limit, orderID, orderView))
	return nil
}

// ----- orders

type lineItemInput struct {
	SKU            string `json:"sku"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

func (li lineItemInput) check() (int64, error) {
	if li.SKU == "" {
		return 0, badInput("missing_field", "line item sku is required")
	}
	if li.Quantity < 1 || li.Quantity > MaxQuantity {
		return 0, badInput("bad_quantity", "line item quantity must be 1..%d", MaxQuantity)
	}
	if li.UnitPriceCents < 0 || li.UnitPriceCents > MaxUnitPrice {
		return 0, badInput("bad_price", "line item unit_price_cents must be 0..%d", int64(MaxUnitPrice))
	}
	return int64(li.Quantity) * li.UnitPriceCents, nil
}

type orderInput struct {
	Number     *string         `json:"number"`
	Status     *string         `json:"status"`
	Note       *string         `json:"note"`
	CustomerID *uuid.UUID      `json:"customer_id"`
	LineItems  []lineItemInput `json:"line_items"`
}

// check refuses input the schema does not bound: a note is free text, and
// a page of 200 orders of 1 MiB each would cost every tenant of the
// process memory and time.
func (in *orderInput) check() error {
	if in.Note != nil && len(*in.Note) > MaxNoteBytes {
		return badInput("note_too_long", "note is at most %d bytes", MaxNoteBytes)
	}
	return nil
}

func status(s *string) (*order.Status, error) {
	if s == nil {
		return nil, nil
	}
	st := order.Status(*s)
	if err := order.StatusValidator(st); err != nil {
		return nil, badInput("bad_status", "status must be draft, placed, shipped or cancelled")
	}
	return &st, nil
}

// customerExists checks that the request's tenant has the customer. An id
// of another tenant is not found, like an unknown one.
func customerExists(ctx context.Context, c *ent.CustomerClient, id *uuid.UUID) error {
	if id == nil {
		return nil
	}
	ok, err := c.Query().Where(customer.ID(*id)).Exist(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return ErrNotFound
	}
	return nil
}

func (a *API) listOrders(w http.ResponseWriter, r *http.Request) error {
	p, err := pageOf(r)
	if err != nil {
		return err
	}
	q := a.Client.Order.Query().Order(ent.Asc(order.FieldID)).Limit(p.limit + 1)
	if p.after != nil {
		q.Where(order.IDGT(*p.after))
	}
	if s := r.URL.Query().Get("status"); s != "" {
		st, err := status(&s)
		if err != nil {
			return err
		}
		q.Where(order.StatusEQ(*st))
	}
	rows, err := q.All(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, listOf(rows, p.limit, orderID, orderView))
	return nil
}

func (a *API) createOrder(w http.ResponseWriter, r *http.Request) error {
	var in orderInput
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if in.Number == nil {
		return badInput("missing_field", "number is required")
	}
	if err := in.check(); err != nil {
		return err
	}
	st, err := status(in.Status)
	if err != nil {
		return err
	}
	if len(in.LineItems) > MaxLineItems {
		return badInput("too_many_line_items", "at most %d line items", MaxLineItems)
	}
	var total int64
	for _, li := range in.LineItems {
		sum, err := li.check()
		if err != nil {
			return err
		}
		if total > math.MaxInt64-sum {
			return badInput("total_too_large", "the order's total exceeds %d cents", int64(math.MaxInt64))
		}
		total += sum
	}
	ctx := r.Context()
	var out *ent.Order
	err = a.inTx(ctx, func(tx *ent.Tx) error {
		if err := customerExists(ctx, tx.Customer, in.CustomerID); err != nil {
			return err
		}
		o, err := tx.Order.Create().SetNumber(*in.Number).SetNillableStatus(st).SetNillableNote(in.Note).
			SetNillableCustomerID(in.CustomerID).SetTotalCents(total).Save(ctx)
		if err != nil {
			return err
		}
		if len(in.LineItems) > 0 {
			if err := tx.LineItem.MapCreateBulk(in.LineItems, func(c *ent.LineItemCreate, i int) {
				li := in.LineItems[i]
				c.SetOrderID(o.ID).SetSku(li.SKU).SetQuantity(li.Quantity).SetUnitPriceCents(li.UnitPriceCents)
			}).Exec(ctx); err != nil {
				return err
			}
		}
		out, err = orderWithEdges(ctx, tx.Order, o.ID)
		return err
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, orderView(out))
	return nil
}

func (a *API) orderWithEdges(ctx context.Context, id uuid.UUID) (*ent.Order, error) {
	return orderWithEdges(ctx, a.Client.Order, id)
}

func orderWithEdges(ctx context.Context, c *ent.OrderClient, id uuid.UUID) (*ent.Order, error) {
	return c.Query().Where(order.ID(id)).
		WithLineItems(func(q *ent.LineItemQuery) { q.Order(ent.Asc(lineitem.FieldSku), ent.Asc(lineitem.FieldID)) }).
		WithTags(func(q *ent.TagQuery) { q.Order(ent.Asc(tag.FieldName)) }).
		Only(ctx)
}

func (a *API) getOrder(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	o, err := a.orderWithEdges(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, orderView(o))
	return nil
}

func (a *API) updateOrder(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	var in orderInput
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if in.LineItems != nil {
		return badInput("read_only_field", "line items change through /v1/orders/{id}/line_items")
	}
	if err := in.check(); err != nil {
		return err
	}
	st, err := status(in.Status)
	if err != nil {
		return err
	}
	ctx := r.Context()
	var o *ent.Order
	err = a.inTx(ctx, func(tx *ent.Tx) error {
		if err := customerExists(ctx, tx.Customer, in.CustomerID); err != nil {
			return err
		}
		if err := tx.Order.UpdateOneID(id).SetNillableNumber(in.Number).SetNillableStatus(st).
			SetNillableNote(in.Note).SetNillableCustomerID(in.CustomerID).Exec(ctx); err != nil {
			return err
		}
		var err error
		o, err = orderWithEdges(ctx, tx.Order, id)
		return err
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, orderView(o))
	return nil
}

func (a *API) deleteOrder(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	ctx := r.Context()
	err = a.inTx(ctx, func(tx *ent.Tx) error {
		if _, err := tx.OrderTag.Delete().Where(ordertag.OrderID(id)).Exec(ctx); err != nil {
			return err
		}
		if _, err := tx.LineItem.Delete().Where(lineitem.OrderID(id)).Exec(ctx); err != nil {
			return err
		}
		return tx.Order.DeleteOneID(id).Exec(ctx)
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusNoContent, nil)
	return nil
}

func (a *API) addLineItem(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	var in lineItemInput
	if err := decode(w, r, &in); err != nil {
		return err
	}
	sum, err := in.check()
	if err != nil {
		return err
	}
	ctx := r.Context()
	var li *ent.LineItem
	err = a.inTx(ctx, func(tx *ent.Tx) error {
		// Locks the order row and fails with not found for an order the
		// tenant does not have, before anything is inserted.
		if err := tx.Order.UpdateOneID(id).AddTotalCents(sum).Exec(ctx); err != nil {
			return err
		}
		li, err = tx.LineItem.Create().SetOrderID(id).SetSku(in.SKU).SetQuantity(in.Quantity).SetUnitPriceCents(in.UnitPriceCents).Save(ctx)
		return err
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, lineItemView(li))
	return nil
}

func (a *API) removeLineItem(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	item, err := pathID(r, "item")
	if err != nil {
		return err
	}
	ctx := r.Context()
	err = a.inTx(ctx, func(tx *ent.Tx) error {
		li, err := tx.LineItem.Query().Where(lineitem.ID(item), lineitem.OrderID(id)).Only(ctx)
		if err != nil {
			return err
		}
		// The delete decides under concurrency: only one request removes
		// the row and adjusts the total.
		n, err := tx.LineItem.Delete().Where(lineitem.ID(item), lineitem.OrderID(id)).Exec(ctx)
		if err != nil {
			return err
		}
		if n == 0 {
			return ErrNotFound
		}
		return tx.Order.UpdateOneID(id).AddTotalCents(-int64(li.Quantity) * li.UnitPriceCents).Exec(ctx)
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusNoContent, nil)
	return nil
}

func (a *API) tagOrder(w http.ResponseWriter, r *http.Request) error {
	oid, err := pathID(r, "id")
	if err != nil {
		return err
	}
	tid, err := pathID(r, "tag")
	if err != nil {
		return err
	}
	ctx := r.Context()
	err = a.inTx(ctx, func(tx *ent.Tx) error {
		// Both ends must be the tenant's: another tenant's order or tag is
		// not found (the composite foreign keys would refuse it too).
		if ok, err := tx.Order.Query().Where(order.ID(oid)).Exist(ctx); err != nil {
			return err
		} else if !ok {
			return ErrNotFound
		}
		if ok, err := tx.Tag.Query().Where(tag.ID(tid)).Exist(ctx); err != nil {
			return err
		} else if !ok {
			return ErrNotFound
		}
		linked, err := tx.OrderTag.Query().Where(ordertag.OrderID(oid), ordertag.TagID(tid)).Exist(ctx)
		if err != nil || linked {
			return err
		}
		return tx.OrderTag.Create().SetOrderID(oid).SetTagID(tid).Exec(ctx)
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "order_tags_pkey" {
		err = nil // a concurrent PUT linked them: idempotent
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusNoContent, nil)
	return nil
}

func (a *API) untagOrder(w http.ResponseWriter, r *http.Request) error {
	oid, err := pathID(r, "id")
	if err != nil {
		return err
	}
	tid, err := pathID(r, "tag")
	if err != nil {
		return err
	}
	n, err := a.Client.OrderTag.Delete().Where(ordertag.OrderID(oid), ordertag.TagID(tid)).Exec(r.Context())
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	writeJSON(w, http.StatusNoContent, nil)
	return nil
}

// ----- tags

type tagInput struct {
	Name *string `json:"name"`
}

func (a *API) listTags(w http.ResponseWriter, r *http.Request) error {
	p, err := pageOf(r)
	if err != nil {
		return err
	}
	q := a.Client.Tag.Query().Order(ent.Asc(tag.FieldID)).Limit(p.limit + 1)
	if p.after != nil {
		q.Where(tag.IDGT(*p.after))
	}
	rows, err := q.All(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, listOf(rows, p.limit, tagID, tagView))
	return nil
}

func (a *API) createTag(w http.ResponseWriter, r *http.Request) error {
	var in tagInput
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if in.Name == nil {
		return badInput("missing_field", "name is required")
	}
	t, err := a.Client.Tag.Create().SetName(*in.Name).Save(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, tagView(t))
	return nil
}

func (a *API) getTag(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	t, err := a.Client.Tag.Get(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tagView(t))
	return nil
}

func (a *API) updateTag(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	var in tagInput
	if err := decode(w, r, &in); err != nil {
		return err
	}
	t, err := a.Client.Tag.UpdateOneID(id).SetNillableName(in.Name).Save(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tagView(t))
	return nil
}

func (a *API) deleteTag(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	ctx := r.Context()
	err = a.inTx(ctx, func(tx *ent.Tx) error {
		if _, err := tx.OrderTag.Delete().Where(ordertag.TagID(id)).Exec(ctx); err != nil {
			return err
		}
		return tx.Tag.DeleteOneID(id).Exec(ctx)
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusNoContent, nil)
	return nil
}

func (a *API) listTagOrders(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	p, err := pageOf(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	if ok, err := a.Client.Tag.Query().Where(tag.ID(id)).Exist(ctx); err != nil {
		return err
	} else if !ok {
		return ErrNotFound
	}
	// Through the join rows (tenant-scoped), not HasTagsWith, which Ent
	// builds as a subquery that the tenant interceptor does not reach.
	lq := a.Client.OrderTag.Query().Where(ordertag.TagID(id)).Order(ordertag.ByOrderID()).Limit(p.limit + 1)
	if p.after != nil {
		lq.Where(predicate.OrderTag(sql.FieldGT(ordertag.FieldOrderID, *p.after)))
	}
	links, err := lq.All(ctx)
	if err != nil {
		return err
	}
	ids := make([]uuid.UUID, len(links))
	for i, l := range links {
		ids[i] = l.OrderID
	}
	rows, err := a.Client.Order.Query().Where(order.IDIn(ids...)).Order(ent.Asc(order.FieldID)).All(ctx)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, listOf(rows, p.limit, orderID, orderView))
	return nil
}
