-- Demo shop data for M, generated (deterministic: the same rows every time).
-- 12 categories, 600 products, 400 customers, 3000 orders.
-- Needs demo/schema.sql first. updated_at is set to historical times (INSERT fires no
-- trigger), so after the first run an incremental run reads only what demo/changes.sql touches.

BEGIN;

INSERT INTO categories (category_id, name, parent_id, updated_at)
SELECT v.*, timestamptz '2022-12-01 00:00:00+00' FROM (VALUES
    (1, 'Kitchen', NULL),
    (2, 'Кухня / Чайники', 1),
    (3, 'Lighting 💡', NULL),
    (4, 'Books', NULL),
    (5, 'Книги: фантастика', 4),
    (6, 'Garden', NULL),
    (7, 'Tools & Hardware', 6),
    (8, 'Toys "for kids"', NULL),
    (9, 'Électronique', NULL),
    (10, '家居', NULL),
    (11, 'Sport', NULL),
    (12, 'Misc', NULL)) AS v;

INSERT INTO products (product_id, sku, title, category, status, price, weight_kg, tags, attrs,
                      external_id, thumbnail, warranty, description, created_at, updated_at)
SELECT
    g,
    format('SKU-%s', lpad(g::text, 5, '0')),
    (ARRAY['Kettle', 'Чайник', 'Lamp', 'Лампа', 'Mug ☕', 'Novel', 'Роман', 'Shovel',
           'Robot 🤖', 'Headphones'])[1 + g % 10] || ' ' || (g / 10 + 1)::text,
    (SELECT name FROM categories WHERE category_id = 1 + g % 12),
    (ARRAY['draft', 'active', 'active', 'active', 'discontinued']::product_status[])[1 + g % 5],
    round((4.99 + (g * 7919) % 50000 / 100.0)::numeric, 2),
    CASE WHEN g % 9 = 0 THEN NULL ELSE round((g % 250) / 10.0 + 0.1, 3) END,
    CASE g % 6
        WHEN 0 THEN NULL
        WHEN 1 THEN '{}'::text[]
        WHEN 2 THEN ARRAY['new', 'sale']
        WHEN 3 THEN ARRAY['хит продаж', '🔥', NULL]
        WHEN 4 THEN ARRAY['with "quotes"', 'back\slash', 'comma,inside']
        ELSE ARRAY['eco']
    END,
    CASE WHEN g % 11 = 0 THEN NULL ELSE jsonb_build_object(
        'color', (ARRAY['red', 'чёрный', 'white', 'зелёный'])[1 + g % 4],
        'dims', jsonb_build_object('w', g % 40, 'h', g % 25 + 0.5, 'unit', 'cm'),
        'gift', g % 2 = 0,
        'ratings', jsonb_build_array(g % 5 + 1, (g + 2) % 5 + 1),
        'note', CASE WHEN g % 3 = 0 THEN NULL ELSE 'ok ✓' END) END,
    CASE WHEN g % 13 = 0 THEN NULL ELSE md5('product-' || g)::uuid END,
    CASE WHEN g % 4 = 0 THEN NULL
         ELSE decode(md5('thumb-' || g) || '00ff00', 'hex') END,
    CASE g % 4
        WHEN 0 THEN NULL
        WHEN 1 THEN interval '1 year'
        WHEN 2 THEN interval '6 months 15 days'
        ELSE interval '90 days 12:30:00'
    END,
    CASE WHEN g % 7 = 0 THEN NULL
         WHEN g % 7 = 1 THEN E'Многострочное\nописание\tс табуляцией'
         WHEN g % 7 = 2 THEN 'It''s "great" — 100% cotton'
         ELSE 'Описание товара №' || g || ' 🛒' END,
    timestamptz '2023-01-01 00:00:00+00' + g * interval '7 hours 13 minutes',
    timestamptz '2023-01-01 00:00:00+00' + g * interval '7 hours 13 minutes'
        + (g % 30) * interval '1 day 1 hour'
FROM generate_series(1, 600) AS g;

INSERT INTO customers (customer_id, customer_uuid, email, full_name, country, birth_date,
                       created_at, updated_at)
SELECT
    g,
    md5('customer-' || g)::uuid,
    -- mixed case on purpose: the order_facts job normalises it with lower()
    format('%s.%s@Example.COM', (ARRAY['Anna', 'Ivan', 'Olga', 'John', 'Marie', 'Ли'])[1 + g % 6], g),
    (ARRAY['Анна Иванова', 'Ivan Petrov', 'Ольга Смирнова', 'John O''Brien', 'Marie Curie',
           '李小龙'])[1 + g % 6] || ' #' || g,
    CASE WHEN g % 10 = 0 THEN NULL ELSE (ARRAY['RU', 'DE', 'FR', 'US', 'CN', 'RS'])[1 + g % 6] END,
    CASE WHEN g % 5 = 0 THEN NULL ELSE date '1960-01-01' + (g * 97) % 16000 END,
    timestamptz '2022-06-01 00:00:00+00' + g * interval '1 day 3 hours',
    timestamptz '2022-06-01 00:00:00+00' + g * interval '1 day 3 hours' + interval '12 days'
FROM generate_series(1, 400) AS g;

INSERT INTO orders (order_id, customer_id, product_id, qty, unit_price, discount, status,
                    delivery_time, note, ordered_at, updated_at)
SELECT
    g,
    1 + (g * 37) % 400,
    1 + (g * 53) % 600,
    1 + g % 4,
    p.price,
    (ARRAY[0, 0, 0.05, 0.1, 0.125, 0.333])[1 + g % 6],
    (ARRAY['placed', 'shipped', 'delivered', 'delivered', 'delivered', 'cancelled'])[1 + g % 6],
    CASE WHEN g % 6 IN (2, 3, 4) THEN make_interval(days => g % 9, hours => g % 24) END,
    CASE WHEN g % 17 = 0 THEN 'Позвонить за час 📞' WHEN g % 19 = 0 THEN '' END,
    timestamptz '2024-01-01 08:00:00+00' + g * interval '2 hours 17 minutes',
    timestamptz '2024-01-01 08:00:00+00' + g * interval '2 hours 17 minutes'
        + (g % 10) * interval '1 day 30 minutes'
FROM generate_series(1, 3000) AS g
JOIN products p ON p.product_id = 1 + (g * 53) % 600;

COMMIT;

ANALYZE categories, products, customers, orders;
