-- Changes in M between two runs, to show an incremental run.
-- Triggers move updated_at forward on every UPDATE; new rows get now().

BEGIN;

-- 5 products repriced, 1 retitled (a new (title, category) key for product_titles),
-- 1 product with NULLs filled in
UPDATE products SET price = price + 1.00 WHERE product_id IN (10, 20, 30, 40, 50);
UPDATE products SET title = 'Чайник электрический 2000', status = 'active' WHERE product_id = 11;
UPDATE products SET tags = ARRAY['updated', 'обновлено'], attrs = '{"restocked": true}'
    WHERE product_id = 12;

-- 2 new products and an order for one of them
INSERT INTO products (product_id, sku, title, category, status, price, tags, attrs, external_id,
                      thumbnail, warranty, description)
VALUES
    (601, 'SKU-00601', 'Самовар 🫖', 'Кухня / Чайники', 'active', 129.90,
     ARRAY['new', 'традиция'], '{"volume_l": 5, "material": "латунь"}',
     'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\xdeadbeef00', interval '2 years',
     'Настоящий тульский самовар'),
    (602, 'SKU-00602', 'Lamp 999', 'Lighting 💡', 'draft', 19.99,
     NULL, NULL, NULL, NULL, NULL, NULL);

INSERT INTO orders (order_id, customer_id, product_id, qty, unit_price, discount, ordered_at)
VALUES (3001, 7, 601, 2, 129.90, 0.05, now());

-- 1 order cancelled (order_facts drops cancelled orders) and 1 customer's e-mail changed
-- (order_facts rows of that customer change through the join)
UPDATE orders SET status = 'cancelled' WHERE order_id = 1;
UPDATE customers SET email = 'Anna.New@Example.COM' WHERE customer_id = 6;

-- deletions: 1 product (its orders go with it: ON DELETE CASCADE) and 1 order
DELETE FROM products WHERE product_id = 599;
DELETE FROM orders WHERE order_id = 2;

COMMIT;
