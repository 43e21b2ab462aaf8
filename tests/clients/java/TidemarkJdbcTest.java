// pgjdbc (Debian's libpostgresql-jdbc-java) against tidemark's PostgreSQL wire protocol frontend.
//
// Usage: java -cp <classes>:/usr/share/java/postgresql.jar TidemarkJdbcTest TIDEMARK_URL ORACLE_URL
//
// TIDEMARK_URL reaches tidemark (logical table `events`); ORACLE_URL reaches the warehouse
// database directly, where `events_oracle` holds every event exactly once. Covers what BI tools
// do with JDBC: DatabaseMetaData, a PreparedStatement run often enough that pgjdbc switches to a
// server-prepared statement with binary transfer (after prepareThreshold = 5 executions),
// cursor-style fetching with setFetchSize and autocommit off, and Statement.cancel().
//
// Prints `pgjdbc: N checks passed` and exits 0, or lists the failures and exits 1.
// Compiled and run by tests/pg_clients.rs (run it with -Duser.timezone=UTC).

import java.math.BigDecimal;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Timestamp;
import java.sql.Types;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

public class TidemarkJdbcTest {
    private static int passed = 0;
    private static final List<String> failures = new ArrayList<>();

    private static void check(String name, boolean ok, Object detail) {
        if (ok) {
            passed++;
        } else {
            failures.add(name + ": " + detail);
        }
    }

    private static void same(String name, Object got, Object want) {
        check(name, Objects.equals(got, want), "tidemark " + got + " != oracle " + want);
    }

    private interface Group {
        void run() throws Exception;
    }

    private static void group(String name, Group g) {
        try {
            g.run();
        } catch (Exception e) {
            String state = e instanceof SQLException ? " (SQLState " + ((SQLException) e).getSQLState() + ")" : "";
            failures.add(name + ": threw " + e + state);
        }
    }

    /** Every row of a result set as a list of getObject values. */
    private static List<List<Object>> rows(ResultSet rs) throws SQLException {
        List<List<Object>> out = new ArrayList<>();
        int n = rs.getMetaData().getColumnCount();
        while (rs.next()) {
            List<Object> row = new ArrayList<>();
            for (int i = 1; i <= n; i++) {
                row.add(rs.getObject(i));
            }
            out.add(row);
        }
        return out;
    }

    private static List<List<Object>> run(PreparedStatement ps, Timestamp t, int qty) throws SQLException {
        ps.setTimestamp(1, t);
        ps.setInt(2, qty);
        try (ResultSet rs = ps.executeQuery()) {
            return rows(rs);
        }
    }

    public static void main(String[] args) throws Exception {
        Class.forName("org.postgresql.Driver");
        try (Connection tm = DriverManager.getConnection(args[0]);
                Connection oracle = DriverManager.getConnection(args[1])) {
            tests(tm, oracle);
        } catch (SQLException e) {
            failures.add("connection: " + e + " (SQLState " + e.getSQLState() + ")");
        }
        if (!failures.isEmpty()) {
            System.out.println("pgjdbc: " + passed + " checks passed, " + failures.size() + " failed");
            for (String f : failures) {
                System.out.println("FAILED " + f);
            }
            System.exit(1);
        }
        System.out.println("pgjdbc: " + passed + " checks passed");
    }

    private static void tests(Connection tm, Connection oracle) throws Exception {
        group("connect", () -> {
            check("isValid (empty query)", tm.isValid(5), "false");
            DatabaseMetaData md = tm.getMetaData();
            same("product name", md.getDatabaseProductName(), "PostgreSQL");
            check("product version", md.getDatabaseProductVersion().length() > 0, md.getDatabaseProductVersion());
        });

        group("getTables", () -> {
            boolean found = false;
            try (ResultSet rs = tm.getMetaData().getTables(null, null, "events", null)) {
                while (rs.next()) {
                    found |= "events".equals(rs.getString("TABLE_NAME"));
                }
            }
            check("getTables finds events", found, "not listed");
        });

        group("getColumns", () -> {
            Map<String, String> typeNames = new HashMap<>();
            Map<String, Integer> types = new HashMap<>();
            Map<String, Integer> sizes = new HashMap<>();
            Map<String, Integer> digits = new HashMap<>();
            try (ResultSet rs = tm.getMetaData().getColumns(null, null, "events", null)) {
                while (rs.next()) {
                    String col = rs.getString("COLUMN_NAME");
                    typeNames.put(col, rs.getString("TYPE_NAME"));
                    types.put(col, rs.getInt("DATA_TYPE"));
                    sizes.put(col, rs.getInt("COLUMN_SIZE"));
                    digits.put(col, rs.getInt("DECIMAL_DIGITS"));
                }
            }
            same("11 columns", typeNames.size(), 11);
            same("id type name", typeNames.get("id"), "int8");
            same("id type", types.get("id"), Types.BIGINT);
            same("amount type name", typeNames.get("amount"), "numeric");
            same("amount type", types.get("amount"), Types.NUMERIC);
            same("amount precision", sizes.get("amount"), 12);
            same("amount scale", digits.get("amount"), 2);
            same("event_time type name", typeNames.get("event_time"), "timestamp");
            same("event_time type", types.get("event_time"), Types.TIMESTAMP);
            same("country type name", typeNames.get("country"), "text");
        });

        group("getSchemas", () -> {
            boolean found = false;
            try (ResultSet rs = tm.getMetaData().getSchemas()) {
                while (rs.next()) {
                    found |= "public".equals(rs.getString("TABLE_SCHEM"));
                }
            }
            check("getSchemas includes public", found, "not listed");
        });

        group("PreparedStatement x10 (binary after 5)", () -> {
            String agg = "SELECT count(*), sum(amount) FROM %s WHERE event_time >= ? AND qty > ?";
            String rowsSql = "SELECT id, event_time, amount, big, qty, flag, day, score FROM %s "
                    + "WHERE event_time >= ? AND qty > ? ORDER BY id LIMIT 50";
            Timestamp t = Timestamp.valueOf("2024-03-15 06:30:00");
            List<List<Object>> wantAgg;
            List<List<Object>> wantRows;
            try (PreparedStatement o1 = oracle.prepareStatement(String.format(agg, "events_oracle"));
                    PreparedStatement o2 = oracle.prepareStatement(String.format(rowsSql, "events_oracle"))) {
                wantAgg = run(o1, t, 10);
                wantRows = run(o2, t, 10);
            }
            check("oracle sum is a BigDecimal", wantAgg.get(0).get(1) instanceof BigDecimal, wantAgg);
            try (PreparedStatement p1 = tm.prepareStatement(String.format(agg, "events"));
                    PreparedStatement p2 = tm.prepareStatement(String.format(rowsSql, "events"))) {
                for (int i = 1; i <= 10; i++) {
                    same("aggregate, execution " + i, run(p1, t, 10), wantAgg);
                    same("rows, execution " + i, run(p2, t, 10), wantRows);
                }
                check("server-prepared after 10 executions",
                        p1.unwrap(org.postgresql.PGStatement.class).isUseServerPrepare(), "not server-prepared");
            }
        });

        group("setFetchSize(100) with autocommit off", () -> {
            tm.setAutoCommit(false);
            try (Statement st = tm.createStatement()) {
                st.setFetchSize(100);
                long count = 0;
                long sum = 0;
                try (ResultSet rs = st.executeQuery("SELECT g FROM generate_series(1, 50000) g")) {
                    while (rs.next()) {
                        count++;
                        sum += rs.getLong(1);
                    }
                }
                same("50,000 rows streamed", count, 50000L);
                same("their sum", sum, 50000L * 50001L / 2);
                List<List<Object>> got;
                try (ResultSet rs = st.executeQuery("SELECT count(*), sum(id), sum(amount) FROM (SELECT id, amount FROM events) s")) {
                    got = rows(rs);
                }
                long n = 0;
                long ids = 0;
                BigDecimal amounts = BigDecimal.ZERO;
                try (ResultSet rs = st.executeQuery("SELECT id, amount FROM events")) {
                    while (rs.next()) {
                        n++;
                        ids += rs.getLong(1);
                        BigDecimal a = rs.getBigDecimal(2);
                        if (a != null) {
                            amounts = amounts.add(a);
                        }
                    }
                }
                try (Statement os = oracle.createStatement();
                        ResultSet rs = os.executeQuery("SELECT count(*), sum(id), sum(amount) FROM events_oracle")) {
                    List<List<Object>> want = rows(rs);
                    same("passthrough count/sums", got, want);
                    same("events rows streamed: count", n, ((Number) want.get(0).get(0)).longValue());
                    same("events rows streamed: sum(id)", BigDecimal.valueOf(ids), want.get(0).get(1));
                    same("events rows streamed: sum(amount)", amounts, want.get(0).get(2));
                }
            }
            tm.commit();
            tm.setAutoCommit(true);
        });

        group("writes refused", () -> {
            try (Statement st = tm.createStatement()) {
                st.executeUpdate("INSERT INTO countries VALUES ('QQ', 'nowhere', 1)");
                check("insert refused", false, "INSERT succeeded");
            } catch (SQLException e) {
                same("insert refused with SQLState", e.getSQLState(), "25006");
            }
        });

        group("cancel from another thread", () -> {
            try (Statement st = tm.createStatement()) {
                Thread canceller = new Thread(() -> {
                    try {
                        Thread.sleep(500);
                        st.cancel();
                    } catch (Exception e) {
                        failures.add("cancel: " + e);
                    }
                });
                long start = System.nanoTime();
                canceller.start();
                String state = "none";
                try {
                    st.executeQuery("SELECT pg_sleep(5)").close();
                } catch (SQLException e) {
                    state = e.getSQLState();
                }
                long ms = (System.nanoTime() - start) / 1_000_000;
                canceller.join();
                same("cancelled with SQLState", state, "57014");
                check("cancelled within 3 s", ms < 3000, ms + " ms");
            }
            try (Statement st = tm.createStatement(); ResultSet rs = st.executeQuery("SELECT 1")) {
                check("usable after cancel", rs.next() && rs.getInt(1) == 1, "no row");
            }
        });
    }
}
