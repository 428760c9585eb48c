SELECT category, COUNT(*), SUM(qty) FROM items GROUP BY category ORDER BY category;
