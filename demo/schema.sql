-- Demo shop: the master database (M) that the example jobs in jobs/ read.
-- Load with: psql -v ON_ERROR_STOP=1 "$ELT_MASTER_URL" -f demo/schema.sql -f demo/data.sql
-- Re-runnable: it drops and recreates its own objects (and only those).

SET client_min_messages = warning;

BEGIN;

DROP TABLE IF EXISTS orders, customers, products, categories CASCADE;
DROP DOMAIN IF EXISTS positive_price;
DROP TYPE IF EXISTS product_status;
DROP FUNCTION IF EXISTS touch_updated_at();

-- Types that exist only in M: the jobs cast them to plain types for A.
CREATE TYPE product_status AS ENUM ('draft', 'active', 'discontinued');
CREATE DOMAIN positive_price AS numeric(12, 2) CHECK (VALUE > 0);

-- Every table a job reads keeps updated_at current on every UPDATE.
CREATE FUNCTION touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE TABLE categories (
    category_id integer PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    parent_id   integer REFERENCES categories (category_id),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE products (
    product_id  bigint PRIMARY KEY,
    sku         text NOT NULL UNIQUE,
    title       text NOT NULL,
    category    text NOT NULL REFERENCES categories (name) ON UPDATE CASCADE,
    status      product_status NOT NULL DEFAULT 'draft',
    price       positive_price NOT NULL,
    weight_kg   numeric,                       -- unconstrained numeric, keeps trailing zeros
    tags        text[],                        -- NULL, '{}', and arrays with NULL elements
    attrs       jsonb,
    external_id uuid,
    thumbnail   bytea,
    warranty    interval,
    description text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (title, category)                   -- the key of jobs/product_titles.yaml
);

CREATE TABLE customers (
    customer_id   bigint PRIMARY KEY,
    customer_uuid uuid NOT NULL UNIQUE,
    email         text NOT NULL,
    full_name     text NOT NULL,
    country       char(2),
    birth_date    date,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE orders (
    order_id      bigint PRIMARY KEY,
    customer_id   bigint NOT NULL REFERENCES customers ON DELETE CASCADE,
    product_id    bigint NOT NULL REFERENCES products ON DELETE CASCADE,
    qty           integer NOT NULL CHECK (qty > 0),
    unit_price    positive_price NOT NULL,
    discount      numeric(4, 3) NOT NULL DEFAULT 0 CHECK (discount >= 0 AND discount < 1),
    status        text NOT NULL DEFAULT 'placed'
                  CHECK (status IN ('placed', 'shipped', 'delivered', 'cancelled')),
    delivery_time interval,
    note          text,
    ordered_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX categories_updated_at_idx ON categories (updated_at);
CREATE INDEX products_updated_at_idx   ON products (updated_at);
CREATE INDEX customers_updated_at_idx  ON customers (updated_at);
CREATE INDEX orders_updated_at_idx     ON orders (updated_at);
CREATE INDEX orders_customer_id_idx    ON orders (customer_id);
CREATE INDEX orders_product_id_idx     ON orders (product_id);

CREATE TRIGGER categories_touch BEFORE UPDATE ON categories
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE TRIGGER products_touch BEFORE UPDATE ON products
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE TRIGGER customers_touch BEFORE UPDATE ON customers
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE TRIGGER orders_touch BEFORE UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

COMMIT;
