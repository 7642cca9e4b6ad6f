-- The `demo` connection's sample data, loaded once into the database `shop` as its owner
-- `demo_app` (see dev/demo.rs). Every card number is a public test number (Luhn-valid, never
-- issued); names, e-mail addresses and phone numbers are made up (555-01xx is reserved for
-- fiction). The gateway masks them on the way out; nothing here is real.

CREATE TABLE customers (
    id    integer PRIMARY KEY,
    name  text NOT NULL,
    email text,
    phone text,
    card  text,
    note  text
);

COMMENT ON TABLE customers IS 'hoop demo data: test card numbers, made-up people';

INSERT INTO customers (id, name, email, phone, card, note) VALUES
 (1,  'Alice Martin',    'alice.martin@example.com',  '(555) 010-4477',   '4111 1111 1111 1111',
      'Paid with 4111-1111-1111-1111; send the receipt to alice.martin@example.com'),
 (2,  'Bruno Silva',     'bruno@example.org',         '+44 20 7946 0958', '5500 0000 0000 0004',
      'Prefers a call: +44 20 7946 0958, mornings only'),
 (3,  'Chen Wei',        'chen.wei@example.net',      '555.013.2290',     '3782 822463 10005',
      'Amex on file (3782 822463 10005), expires 09/29'),
 (4,  'Dana Okafor',     'dana.okafor@example.com',   '(555) 017-3321',   '4012 8888 8888 1881',
      'Contact by e-mail only'),
 (5,  'Emil Novak',      'emil@example.cz',           '+420 601 555 014', '5105 1051 0510 5100',
      'Invoices to billing@novak.example.cz, not to the personal address'),
 (6,  'Fatima Haddad',   'fatima.haddad@example.com', '(555) 019-8876',   NULL,
      'Pays by bank transfer; backup card 6011111111111117 kept on file'),
 (7,  'Gustav Berg',     'gustav@example.se',         '+46 8 555 010 12', '4242 4242 4242 4242',
      'VIP: free shipping'),
 (8,  'Hana Sato',       'hana.sato@example.jp',      '+81 3 5550 1234',  '3530 1113 3330 0000',
      'Asked to split the payment: 3530-1113-3330-0000 and 4000 0566 5566 5556'),
 (9,  'Ivan Petrov',     'ivan.petrov@example.com',   '555.014.9021',     '5555 5555 5555 4444',
      NULL),
 (10, 'Julia Romano',    'julia@example.it',          '(555) 012-6650',   '3714 496353 98431',
      'Card declined once, retried with 3714-496353-98431'),
 (11, 'Kofi Mensah',     'kofi.mensah@example.com',   '+233 30 555 0199', '6011 0009 9013 9424',
      'Wholesale account; cc: accounts@mensah-trading.example.com'),
 (12, 'Lena Fischer',    'lena.fischer@example.de',   '+49 30 5550 1888', '2223 0031 2200 3222',
      'Moved; new phone (555) 018-2231'),
 (13, 'Mateo Garcia',    'mateo@example.es',          '555.016.4410',     '4000 0566 5566 5556',
      'Loyalty member since 2019'),
 (14, 'Nora Lindqvist',  'nora.l@example.fi',         '(555) 011-0093',   NULL,
      'Invoice customer, no card'),
 (15, 'Omar Farouk',     'omar.farouk@example.com',   '+20 2 5550 4321',  '5200 8282 8282 8210',
      'Gift order: deliver to omar.gifts@example.com, card 5200 8282 8282 8210'),
 (16, 'Priya Nair',      'priya.nair@example.in',     '(555) 015-7702',   '3787 344936 71000',
      'Corporate Amex'),
 (17, 'Quentin Moreau',  'quentin@example.fr',        '+33 1 55 50 12 34', '4000 0025 0000 3155',
      '3-D Secure always asked for this card'),
 (18, 'Rosa Mendes',     'rosa.mendes@example.com',   '555.012.3387',     '4111 1111 1111 1111',
      'Shares a card with Alice Martin (household)'),
 (19, 'Sven Olsen',      'sven@example.no',           '(555) 013-5546',   '5105 1051 0510 5100',
      'Wrote in from sven.olsen.work@example.no about a refund'),
 (20, 'Tara Byrne',      'tara.byrne@example.ie',     '+353 1 555 0170',  '6011 1111 1111 1117',
      'Call (555) 016-2209 before delivery');

CREATE TABLE orders (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES customers (id),
    amount      numeric(10, 2) NOT NULL,
    status      text NOT NULL,
    created_at  timestamptz NOT NULL
);

INSERT INTO orders (customer_id, amount, status, created_at)
SELECT 1 + (g * 7) % 20,
       (10 + (g * 37) % 490) + 0.99,
       (ARRAY['paid', 'paid', 'shipped', 'refunded', 'pending'])[1 + g % 5],
       timestamptz '2025-01-06 09:00:00+00' + g * interval '17 hours'
FROM generate_series(1, 60) AS g;
