// pgjdbc's DatabaseMetaData against tidemark, called as DBeaver and Metabase call it when they
// open a connection and browse it.
//
// Usage: java -cp <classes>:/usr/share/java/postgresql.jar TidemarkJdbcMetadata TIDEMARK_URL WAREHOUSE_URL
//
// TIDEMARK_URL reaches tidemark; WAREHOUSE_URL the warehouse database directly. Every call's
// rows (every column, as strings) must be the same on both: tidemark passes catalog queries to
// the warehouse, where the logical tables are views with their real column types.
//
// Prints `pgjdbc-metadata: N checks passed` and exits 0, or lists the failures and exits 1.
// Compiled and run by tests/client_matrix.rs.

import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

public class TidemarkJdbcMetadata {
    private static int passed = 0;
    private static final List<String> failures = new ArrayList<>();

    private interface Call {
        ResultSet on(DatabaseMetaData md) throws SQLException;
    }

    /** Every row of a result set, every column as its string. */
    private static List<List<String>> rows(ResultSet rs) throws SQLException {
        List<List<String>> out = new ArrayList<>();
        int n = rs.getMetaData().getColumnCount();
        while (rs.next()) {
            List<String> row = new ArrayList<>();
            for (int i = 1; i <= n; i++) {
                row.add(rs.getString(i));
            }
            out.add(row);
        }
        rs.close();
        return out;
    }

    /** The same call on both connections gives the same rows (and at least `min` of them). */
    private static void same(String name, DatabaseMetaData tm, DatabaseMetaData wh, Call call, int min) {
        try {
            List<List<String>> got = rows(call.on(tm));
            List<List<String>> want = rows(call.on(wh));
            if (!Objects.equals(got, want)) {
                int i = 0;
                while (i < Math.min(got.size(), want.size()) && got.get(i).equals(want.get(i))) {
                    i++;
                }
                failures.add(name + ": " + got.size() + " rows from tidemark, " + want.size()
                        + " from the warehouse; first difference at row " + i + ": tidemark "
                        + (i < got.size() ? got.get(i) : "none") + ", warehouse "
                        + (i < want.size() ? want.get(i) : "none"));
            } else if (got.size() < min) {
                failures.add(name + ": only " + got.size() + " rows, expected at least " + min);
            } else {
                passed++;
            }
        } catch (SQLException e) {
            failures.add(name + ": threw " + e + " (SQLState " + e.getSQLState() + ")");
        }
    }

    public static void main(String[] args) throws Exception {
        try (Connection tmc = DriverManager.getConnection(args[0]);
                Connection whc = DriverManager.getConnection(args[1])) {
            DatabaseMetaData tm = tmc.getMetaData();
            DatabaseMetaData wh = whc.getMetaData();
            String[] tables = {"TABLE", "VIEW"};
            same("getCatalogs", tm, wh, md -> md.getCatalogs(), 1);
            same("getSchemas", tm, wh, md -> md.getSchemas(), 2);
            same("getSchemas(public)", tm, wh, md -> md.getSchemas(null, "public"), 1);
            same("getTableTypes", tm, wh, md -> md.getTableTypes(), 2);
            same("getTables(public)", tm, wh, md -> md.getTables(null, "public", "%", tables), 5);
            same("getTables(events)", tm, wh, md -> md.getTables(null, "public", "events", null), 1);
            same("getColumns(events)", tm, wh, md -> md.getColumns(null, "public", "events", "%"), 11);
            same("getColumns(all of public)", tm, wh, md -> md.getColumns(null, "public", "%", "%"), 20);
            same("getPrimaryKeys(countries)", tm, wh, md -> md.getPrimaryKeys(null, "public", "countries"), 1);
            same("getImportedKeys(country_notes)", tm, wh,
                    md -> md.getImportedKeys(null, "public", "country_notes"), 1);
            same("getExportedKeys(countries)", tm, wh, md -> md.getExportedKeys(null, "public", "countries"), 1);
            same("getIndexInfo(countries)", tm, wh,
                    md -> md.getIndexInfo(null, "public", "countries", false, true), 1);
            same("getTypeInfo", tm, wh, md -> md.getTypeInfo(), 20);
            same("getFunctions(public)", tm, wh, md -> md.getFunctions(null, "public", "%"), 1);
            same("getFunctionColumns(revenue_share)", tm, wh,
                    md -> md.getFunctionColumns(null, "public", "revenue_share", "%"), 2);
            same("getProcedures(public)", tm, wh, md -> md.getProcedures(null, "public", "%"), 0);
            same("getTablePrivileges(events)", tm, wh, md -> md.getTablePrivileges(null, "public", "events"), 0);
            check("getDatabaseProductName", tm.getDatabaseProductName(), wh.getDatabaseProductName());
            check("getDatabaseProductVersion", tm.getDatabaseProductVersion(), wh.getDatabaseProductVersion());
            check("getIdentifierQuoteString", tm.getIdentifierQuoteString(), wh.getIdentifierQuoteString());
            check("getSQLKeywords", tm.getSQLKeywords(), wh.getSQLKeywords());
            check("getUserName", tm.getUserName(), "analyst");
            check("isReadOnly", tmc.isReadOnly(), false);
            check("getTransactionIsolation", tmc.getTransactionIsolation(), whc.getTransactionIsolation());
            check("getSchema", tmc.getSchema(), whc.getSchema());
        }
        if (!failures.isEmpty()) {
            System.out.println("pgjdbc-metadata: " + failures.size() + " failed, " + passed + " passed");
            for (String f : failures) {
                System.out.println("FAIL " + f);
            }
            System.exit(1);
        }
        System.out.println("pgjdbc-metadata: " + passed + " checks passed");
    }

    private static void check(String name, Object got, Object want) {
        if (Objects.equals(got, want)) {
            passed++;
        } else {
            failures.add(name + ": tidemark " + got + ", warehouse " + want);
        }
    }
}
